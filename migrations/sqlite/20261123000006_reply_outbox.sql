-- The reply outbox: the replies to an inbox event are recorded here before any is sent, and Meta's
-- message_id is stored once it accepts one, so an event handed over again after a crash never resends a
-- reply Meta confirmed. (seq orders an event's replies; a second recording of the same event keeps the first.)
CREATE TABLE webhook_replies (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    inbox_id     INTEGER NOT NULL REFERENCES webhook_inbox (id),
    seq          INTEGER NOT NULL,
    body         TEXT NOT NULL,
    message_id   TEXT,
    recorded_at  TEXT NOT NULL,
    sent_at      TEXT,
    UNIQUE (inbox_id, seq)
);
-- Retention prunes finished inbox rows by age.
CREATE INDEX webhook_inbox_finished ON webhook_inbox (finished_at) WHERE finished_at IS NOT NULL;
