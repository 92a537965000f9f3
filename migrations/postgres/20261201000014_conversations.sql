-- The portal's conversation view: each stored message, postback and person's echo names the customer of its
-- conversation, so a Page's conversations and one conversation's messages are read from an index (receipts,
-- reactions and this app's own echoes leave it NULL and take no index entry). Rows stored before this
-- migration are filled in from their JSON (customers' messages and postbacks; an older echo cannot be told
-- apart from this app's own, so it stays out of the view).
ALTER TABLE webhook_inbox ADD COLUMN customer_id TEXT;
UPDATE webhook_inbox SET customer_id = event::jsonb ->> 'sender'
 WHERE event::jsonb -> 'kind' ->> 'type' IN ('message', 'postback')
   AND NOT COALESCE((event::jsonb -> 'kind' ->> 'is_echo')::boolean, false)
   AND event::jsonb ->> 'sender' <> event::jsonb ->> 'account_id';
CREATE INDEX webhook_inbox_conversation ON webhook_inbox (page_id, customer_id, id) WHERE customer_id IS NOT NULL;
