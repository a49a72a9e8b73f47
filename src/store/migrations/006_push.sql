-- Push notifications and blocks (PROTOCOL-v3), kept by the PostgreSQL memberships engine.
-- A user's devices: one row per (user, device id); `address` is the FCM/APNs token or the Web
-- Push subscription, as JSON.
CREATE TABLE push_devices (
  user_id    text        NOT NULL,
  device     text        NOT NULL,
  kind       text        NOT NULL,
  address    jsonb       NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, device)
);

-- A member's notify level in a room; no row means `all`.
CREATE TABLE push_notify (
  room    text NOT NULL,
  user_id text NOT NULL,
  level   text NOT NULL,
  PRIMARY KEY (room, user_id)
);

-- `user_id` blocks `blocked`. Looked up by the blocked sender (who of these recipients blocks them?).
CREATE TABLE blocks (
  user_id    text        NOT NULL,
  blocked    text        NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, blocked)
);
CREATE INDEX blocks_blocked ON blocks (blocked, user_id);
