-- Rooms: the epoch of each room's sequence. The last seq is max(messages.seq).
CREATE TABLE rooms (
  room        text PRIMARY KEY,
  epoch       text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- Every chat message, once: (room, seq) is the identity a retry or a repair collides on.
CREATE TABLE messages (
  room        text        NOT NULL,
  seq         bigint      NOT NULL,
  id          text        NOT NULL,
  user_id     text        NOT NULL,
  user_name   text        NOT NULL,
  body        text        NOT NULL,
  data        jsonb,
  created_at  timestamptz NOT NULL,
  PRIMARY KEY (room, seq)
);
-- Retention prunes by age.
CREATE INDEX messages_created_at ON messages (created_at);

CREATE TABLE users (
  id          text PRIMARY KEY,
  name        text NOT NULL,
  first_seen  timestamptz NOT NULL DEFAULT now(),
  last_seen   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
  conn             text PRIMARY KEY,
  user_id          text NOT NULL,
  node             text NOT NULL,
  remote_addr      text,
  user_agent       text,
  connected_at     timestamptz NOT NULL DEFAULT now(),
  disconnected_at  timestamptz,
  close_code       integer
);
CREATE INDEX sessions_user ON sessions (user_id, connected_at DESC);

CREATE TABLE audit (
  id          bigserial PRIMARY KEY,
  at          timestamptz NOT NULL DEFAULT now(),
  event       text NOT NULL,
  user_id     text,
  conn        text,
  node        text,
  room        text,
  detail      jsonb
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_user ON audit (user_id, at DESC);
