-- Portal sessions: the cookie holds a random id; only its SHA-256 is stored. Each session has its own
-- CSRF token, checked on every form POST.
CREATE TABLE sessions (
    id_hash     BYTEA PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_user_id ON sessions (user_id);
