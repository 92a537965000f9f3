-- Each OAuth state is bound to the browser that started it: the SHA-256 of a value held in that browser's
-- cookie. A callback from another browser does not match and connects nothing. link_expires_at is the expiry
-- of the onboarding link the flow started from (none from the portal): "Connect again" inherits it.
ALTER TABLE oauth_states ADD COLUMN browser_hash BYTEA;
ALTER TABLE oauth_states ADD COLUMN link_expires_at TIMESTAMPTZ;

-- An invited user signs in first with a one-time password and must choose their own before anything else.
ALTER TABLE users ADD COLUMN must_change_password BOOLEAN NOT NULL DEFAULT FALSE;

-- Meta's signed_request callbacks already handled (by the SHA-256 of the signed_request), so a replay changes
-- nothing and adds no row; a data deletion replay answers with the same confirmation code.
CREATE TABLE meta_callbacks (
    request_hash       BYTEA PRIMARY KEY,
    kind               TEXT NOT NULL CHECK (kind IN ('deauthorize', 'data_deletion')),
    received_at        TIMESTAMPTZ NOT NULL,
    confirmation_code  TEXT
);
CREATE INDEX meta_callbacks_received_at ON meta_callbacks (received_at);
