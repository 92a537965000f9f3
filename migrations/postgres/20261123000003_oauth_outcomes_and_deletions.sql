-- What an OAuth callback did (pages connected, refused and why), shown once on the result page, and
-- Meta's data-deletion requests with their confirmation codes.
ALTER TABLE oauth_states ADD COLUMN outcome TEXT;

CREATE TABLE data_deletion_requests (
    confirmation_code      TEXT PRIMARY KEY,
    facebook_user_id       TEXT NOT NULL,
    requested_at           TIMESTAMPTZ NOT NULL,
    completed_at           TIMESTAMPTZ,
    integrations_affected  INTEGER NOT NULL DEFAULT 0
);
