-- What a webhook body held that Switchboard does not understand (an unknown object or event kind, a changes
-- item, a malformed entry or event): acknowledged to Meta like the rest of the body, and kept raw with the
-- reason, so an operator can see it (`switchboard inbox stats`, `switchboard inbox unhandled`). A redelivery
-- is stored once (raw_hash). Pruned with the inbox, after inbox.retention_days.
CREATE TABLE webhook_unhandled (
    id           BIGSERIAL PRIMARY KEY,
    received_at  TIMESTAMPTZ NOT NULL,
    object       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    reason       TEXT NOT NULL,
    detail       TEXT NOT NULL,
    account_id   TEXT,
    raw          TEXT NOT NULL,
    raw_hash     TEXT NOT NULL UNIQUE
);
CREATE INDEX webhook_unhandled_received ON webhook_unhandled (received_at);
