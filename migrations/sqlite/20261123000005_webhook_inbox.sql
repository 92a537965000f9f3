-- The durable webhook inbox: every accepted event is committed here before Meta gets its 200. The dedup
-- key (the message mid, or a hash of the event) is unique per page, so a redelivery is stored once.
CREATE TABLE webhook_inbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    page_id      TEXT NOT NULL,
    dedup_key    TEXT NOT NULL,
    event        TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    reason       TEXT,
    received_at  TEXT NOT NULL,
    finished_at  TEXT,
    UNIQUE (page_id, dedup_key)
);
CREATE INDEX webhook_inbox_pending ON webhook_inbox (status, id);
