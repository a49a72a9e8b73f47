-- Link previews (PROTOCOL-v4): a message's preview as its `preview` event gave it, shown with
-- the message in history once the broker no longer holds its state; a delete clears it.
ALTER TABLE messages ADD COLUMN preview jsonb;
