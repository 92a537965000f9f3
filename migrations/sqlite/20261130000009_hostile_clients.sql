-- As on PostgreSQL: OAuth states bound to their browser, the onboarding link's expiry, first sign-in password
-- changes, and Meta's signed_request callbacks already handled.
ALTER TABLE oauth_states ADD COLUMN browser_hash BLOB;
ALTER TABLE oauth_states ADD COLUMN link_expires_at TEXT;

ALTER TABLE users ADD COLUMN must_change_password BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE meta_callbacks (
    request_hash       BLOB PRIMARY KEY,
    kind               TEXT NOT NULL CHECK (kind IN ('deauthorize', 'data_deletion')),
    received_at        TEXT NOT NULL,
    confirmation_code  TEXT
);
CREATE INDEX meta_callbacks_received_at ON meta_callbacks (received_at);
