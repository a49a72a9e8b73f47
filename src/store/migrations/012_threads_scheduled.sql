-- Threads (PROTOCOL-v4): a reply names its parent in `extra`; kept as a column so that a
-- thread's summary of an archived message is read by index, not by scanning the room.
ALTER TABLE messages ADD COLUMN reply_to text GENERATED ALWAYS AS (extra ->> 'reply_to') STORED;
CREATE INDEX messages_thread ON messages (room, reply_to, seq) WHERE reply_to IS NOT NULL;

-- A thread (a message with replies) as the users' thread lists read it: its root's seq, how
-- many replies, the newest one's time. Written when a reply is accepted (src/members/threads-postgres.ts).
CREATE TABLE threads (
  room      text        NOT NULL,
  msg       text        NOT NULL,
  root_seq  bigint      NOT NULL,
  count     integer     NOT NULL,
  last_at   timestamptz NOT NULL,
  PRIMARY KEY (room, msg)
);
-- Each reply's seq and author: a thread's unread count is the replies by others above a marker.
CREATE TABLE thread_replies (
  room      text   NOT NULL,
  msg       text   NOT NULL,
  seq       bigint NOT NULL,
  user_id   text   NOT NULL,
  PRIMARY KEY (room, msg, seq)
);
-- Per user and thread: whether it is in the user's list (started or replied in) and the
-- user's marker in it (moved by `read {thread}` and by the user's own replies only).
CREATE TABLE thread_members (
  user_id   text    NOT NULL,
  room      text    NOT NULL,
  msg       text    NOT NULL,
  involved  boolean NOT NULL DEFAULT false,
  read_seq  bigint  NOT NULL DEFAULT 0,
  PRIMARY KEY (user_id, room, msg)
);
CREATE INDEX thread_members_involved ON thread_members (user_id) WHERE involved;

-- Scheduled messages (PROTOCOL-v4): pending until `due_at`, claimed by one node with
-- FOR UPDATE SKIP LOCKED (which moves `due_at` past a lease), deleted once sent or refused.
CREATE TABLE scheduled_messages (
  id          text        PRIMARY KEY,
  user_id     text        NOT NULL,
  send_at     timestamptz NOT NULL,
  due_at      timestamptz NOT NULL,
  item        jsonb       NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX scheduled_messages_due ON scheduled_messages (due_at);
CREATE INDEX scheduled_messages_user ON scheduled_messages (user_id, send_at);
