-- Switchboard's multi-tenant schema (SQLite, the embedded default). Same tables and constraints as the
-- PostgreSQL migration; timestamps are RFC 3339 text written by the application's clock.

CREATE TABLE clients (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    slug        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

CREATE TABLE users (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    email          TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('operator', 'client')),
    client_id      INTEGER REFERENCES clients (id) ON DELETE CASCADE,
    created_at     TEXT NOT NULL,
    CHECK ((role = 'client') = (client_id IS NOT NULL))
);

CREATE TABLE client_integrations (
    id                      INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id               INTEGER NOT NULL REFERENCES clients (id) ON DELETE RESTRICT,
    client_name             TEXT NOT NULL,
    facebook_page_id        TEXT NOT NULL UNIQUE,
    page_name               TEXT,
    instagram_account_id    TEXT UNIQUE,
    encrypted_access_token  BLOB,
    token_key_id            TEXT,
    permissions_granted     TEXT NOT NULL DEFAULT '',
    token_expires_at        TEXT,
    connected_by            TEXT,
    status                  TEXT NOT NULL CHECK (status IN ('connected', 'needs_reauth', 'revoked', 'error')),
    status_reason           TEXT,
    status_changed_at       TEXT NOT NULL,
    connected_at            TEXT NOT NULL,
    updated_at              TEXT NOT NULL,
    CHECK ((encrypted_access_token IS NULL) = (token_key_id IS NULL))
);
CREATE INDEX client_integrations_client_id ON client_integrations (client_id);
CREATE INDEX client_integrations_token_key_id ON client_integrations (token_key_id);
CREATE INDEX client_integrations_connected_by ON client_integrations (connected_by);

CREATE TABLE oauth_states (
    state_hash  BLOB PRIMARY KEY,
    client_id   INTEGER NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    user_id     INTEGER REFERENCES users (id) ON DELETE CASCADE,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT
);
CREATE INDEX oauth_states_expires_at ON oauth_states (expires_at);

CREATE TABLE audit_log (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    at                TEXT NOT NULL,
    actor             TEXT NOT NULL,
    action            TEXT NOT NULL,
    client_id         INTEGER REFERENCES clients (id) ON DELETE SET NULL,
    facebook_page_id  TEXT,
    detail            TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_client_at ON audit_log (client_id, at);
