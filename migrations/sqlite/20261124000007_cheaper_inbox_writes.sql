-- Cheaper inbox writes (as on PostgreSQL): partial indexes for the 'pending' and 'failed' rows the sweep
-- and the dead-letter replay look for, instead of an entry for every row.
DROP INDEX webhook_inbox_pending;
CREATE INDEX webhook_inbox_pending ON webhook_inbox (id) WHERE status = 'pending';
CREATE INDEX webhook_inbox_failed ON webhook_inbox (id) WHERE status = 'failed';
