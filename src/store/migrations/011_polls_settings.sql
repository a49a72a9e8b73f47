-- Polls (v4): each user's vote on a poll as the newest `vote` event left it ('{}': withdrawn).
-- `seq` is that event's, so a vote applied twice (a retried batch, the archive repair) or late
-- never undoes a newer one. A poll's question and options stay in its message's `extra`.
CREATE TABLE poll_votes (
  room        text       NOT NULL,
  msg_id      text       NOT NULL,
  user_id     text       NOT NULL,
  options     smallint[] NOT NULL,
  seq         bigint     NOT NULL,
  PRIMARY KEY (room, msg_id, user_id)
);
-- The seq of a poll's `poll_closed` event; NULL while it is open.
ALTER TABLE messages ADD COLUMN poll_closed_seq bigint;
-- Room settings (v4: slow mode), as the newest `settings` event left them.
ALTER TABLE rooms ADD COLUMN slow_mode_s integer NOT NULL DEFAULT 0;
ALTER TABLE rooms ADD COLUMN settings_seq bigint NOT NULL DEFAULT 0;
