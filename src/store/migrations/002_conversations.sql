-- The room log holds typed events (chat, dm, …), not only chat messages: the event's type and
-- the fields of its type. `extra` is json, not jsonb, so a frame made again from it keeps its
-- field order (the same bytes as the live frame).
ALTER TABLE messages ADD COLUMN type text NOT NULL DEFAULT 'chat';
ALTER TABLE messages ADD COLUMN extra json;
ALTER TABLE messages ALTER COLUMN body DROP NOT NULL;

-- Memberships belong to a user, not a connection. `read_seq` is the user's read marker.
CREATE TABLE memberships (
  room        text        NOT NULL,
  user_id     text        NOT NULL,
  read_seq    bigint      NOT NULL DEFAULT 0,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (room, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

-- The two users of each direct room (user_a <= user_b).
CREATE TABLE direct_rooms (
  room        text PRIMARY KEY,
  user_a      text NOT NULL,
  user_b      text NOT NULL
);
