-- Switchboard's multi-tenant schema (PostgreSQL). Replaces the plan's scripts/create-multitenant-schema.sql.
-- Page access tokens are stored only as AES-256-GCM ciphertext (nonce || ciphertext || tag), sealed by the
-- application with the page id as associated data; token_key_id names the key that sealed them.

CREATE TABLE clients (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    slug        TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE users (
    id             BIGSERIAL PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('operator', 'client')),
    client_id      BIGINT REFERENCES clients (id) ON DELETE CASCADE,
    created_at     TIMESTAMPTZ NOT NULL,
    CHECK ((role = 'client') = (client_id IS NOT NULL))
);

CREATE TABLE client_integrations (
    id                      BIGSERIAL PRIMARY KEY,
    client_id               BIGINT NOT NULL REFERENCES clients (id) ON DELETE RESTRICT,
    client_name             TEXT NOT NULL,
    facebook_page_id        TEXT NOT NULL UNIQUE,
    page_name               TEXT,
    instagram_account_id    TEXT UNIQUE,
    encrypted_access_token  BYTEA,
    token_key_id            TEXT,
    permissions_granted     TEXT NOT NULL DEFAULT '',
    token_expires_at        TIMESTAMPTZ,
    connected_by            TEXT,
    status                  TEXT NOT NULL CHECK (status IN ('connected', 'needs_reauth', 'revoked', 'error')),
    status_reason           TEXT,
    status_changed_at       TIMESTAMPTZ NOT NULL,
    connected_at            TIMESTAMPTZ NOT NULL,
    updated_at              TIMESTAMPTZ NOT NULL,
    CHECK ((encrypted_access_token IS NULL) = (token_key_id IS NULL))
);
CREATE INDEX client_integrations_client_id ON client_integrations (client_id);
CREATE INDEX client_integrations_token_key_id ON client_integrations (token_key_id);
CREATE INDEX client_integrations_connected_by ON client_integrations (connected_by);

CREATE TABLE oauth_states (
    state_hash  BYTEA PRIMARY KEY,
    client_id   BIGINT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    user_id     BIGINT REFERENCES users (id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ
);
CREATE INDEX oauth_states_expires_at ON oauth_states (expires_at);

CREATE TABLE audit_log (
    id                BIGSERIAL PRIMARY KEY,
    at                TIMESTAMPTZ NOT NULL,
    actor             TEXT NOT NULL,
    action            TEXT NOT NULL,
    client_id         BIGINT REFERENCES clients (id) ON DELETE SET NULL,
    facebook_page_id  TEXT,
    detail            TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_client_at ON audit_log (client_id, at);
