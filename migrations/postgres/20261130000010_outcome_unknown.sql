-- Replies whose outcome is unknown (the process that recorded them may have sent them before it stopped) are
-- settled through the Conversations API before they are sent again. For that: whom a reply went to, which
-- replies a stopping tenant never sent, and the replies recorded since a time.
ALTER TABLE webhook_replies ADD COLUMN recipient TEXT;
ALTER TABLE webhook_replies ADD COLUMN unattempted BOOLEAN NOT NULL DEFAULT false;
CREATE INDEX webhook_replies_recorded ON webhook_replies (recorded_at);
