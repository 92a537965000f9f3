-- Replies whose outcome is unknown are settled through the Conversations API before they are sent again
-- (see the PostgreSQL migration).
ALTER TABLE webhook_replies ADD COLUMN recipient TEXT;
ALTER TABLE webhook_replies ADD COLUMN unattempted BOOLEAN NOT NULL DEFAULT 0;
CREATE INDEX webhook_replies_recorded ON webhook_replies (recorded_at);
