-- A person at the business takes over a conversation: when someone answers a customer in the Page Inbox or
-- the Instagram Inbox, the bot stays silent with that customer until the client's pause has passed since the
-- person's last message. The hold is kept here so a restart, an idle stop or a handover to another node does
-- not make the bot talk over the person. A client may choose its own pause.
ALTER TABLE client_settings ADD COLUMN human_pause_secs INTEGER
    CHECK (human_pause_secs IS NULL OR human_pause_secs BETWEEN 60 AND 604800);

CREATE TABLE conversation_holds (
    page_id  TEXT NOT NULL,
    person   TEXT NOT NULL,
    until_ms BIGINT NOT NULL,
    PRIMARY KEY (page_id, person)
);
