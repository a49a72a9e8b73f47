-- Attachments: the metadata of uploaded files (their bytes are on disk or in S3) and the
-- messages that carry them. An upload no message refers to is an orphan, reaped by age.
CREATE TABLE IF NOT EXISTS uploads (
  id text PRIMARY KEY,
  owner text NOT NULL,
  name text NOT NULL,
  type text NOT NULL,
  size bigint NOT NULL,
  width integer,
  height integer,
  created_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_created ON uploads (created_at);
CREATE TABLE IF NOT EXISTS upload_refs (
  upload_id text NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
  room text NOT NULL,
  msg text NOT NULL,
  PRIMARY KEY (upload_id, room, msg)
);
CREATE INDEX IF NOT EXISTS upload_refs_msg ON upload_refs (room, msg);
