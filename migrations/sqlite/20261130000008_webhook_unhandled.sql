-- What a webhook body held that Switchboard does not understand, kept raw with the reason (as on PostgreSQL).
CREATE TABLE webhook_unhandled (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at  TEXT NOT NULL,
    object       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    reason       TEXT NOT NULL,
    detail       TEXT NOT NULL,
    account_id   TEXT,
    raw          TEXT NOT NULL,
    raw_hash     TEXT NOT NULL UNIQUE
);
CREATE INDEX webhook_unhandled_received ON webhook_unhandled (received_at);
