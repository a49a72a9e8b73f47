-- Message lifecycle: the current state of a message, next to its original event (which stays
-- as it was sent, so recovery and the archive replay it unchanged). `state_seq` is the seq of
-- the last edit or delete applied: a change applied twice (a retried batch, the archive
-- repair) or late never undoes a newer one.
ALTER TABLE messages ADD COLUMN edited_at timestamptz;
ALTER TABLE messages ADD COLUMN deleted_at timestamptz;
ALTER TABLE messages ADD COLUMN cur_body text;
ALTER TABLE messages ADD COLUMN cur_data jsonb;
ALTER TABLE messages ADD COLUMN state_seq bigint NOT NULL DEFAULT 0;
-- Edits, deletes, reactions and replies name a message by id.
CREATE INDEX messages_room_id ON messages (room, id);

-- One row per (message, reaction, user); `present` false once removed. `seq` is the event that
-- set it, for the same reason as state_seq.
CREATE TABLE reactions (
  room        text    NOT NULL,
  msg_id      text    NOT NULL,
  reaction    text    NOT NULL,
  user_id     text    NOT NULL,
  present     boolean NOT NULL,
  seq         bigint  NOT NULL,
  PRIMARY KEY (room, msg_id, reaction, user_id)
);

-- Roles given by the API and the moderation that holds, per room per user (the members engine).
CREATE TABLE room_standing (
  room        text        NOT NULL,
  user_id     text        NOT NULL,
  role        text,
  muted_until timestamptz,
  banned      boolean     NOT NULL DEFAULT false,
  PRIMARY KEY (room, user_id)
);
