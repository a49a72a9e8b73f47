-- Search (docs/search.md): the text of a message as it stands (its edit's body once edited,
-- nothing once deleted; other events have none), kept by PostgreSQL itself, so that an edit
-- or a delete is searchable, or gone, in the same write that applies it. Generated columns
-- cannot read each other, so both spell the same expression.
ALTER TABLE messages ADD COLUMN search_body text GENERATED ALWAYS AS (
  CASE WHEN type NOT IN ('chat', 'dm') OR deleted_at IS NOT NULL THEN NULL WHEN edited_at IS NULL THEN body ELSE cur_body END
) STORED;
-- `simple`: no stemming, no stop words, so that a word of any language is its own lexeme.
ALTER TABLE messages ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS (
  to_tsvector('simple', coalesce(CASE WHEN type NOT IN ('chat', 'dm') OR deleted_at IS NOT NULL THEN NULL WHEN edited_at IS NULL THEN body ELSE cur_body END, ''))
) STORED;
CREATE INDEX messages_search_tsv ON messages USING gin (search_tsv) WHERE search_body IS NOT NULL;
-- Newest first within a user's rooms: the order results are paged in.
CREATE INDEX messages_search_order ON messages (created_at DESC, room DESC, seq DESC) WHERE search_body IS NOT NULL;

-- Partial words, URLs, CJK runs: trigrams (pg_trgm). A server without the extension (or a
-- role that may not create it) still migrates: search then matches those by an unindexed
-- ILIKE, and the store logs why at start (src/store/search.ts).
DO $$
BEGIN
  BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
  EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm unavailable: %', SQLERRM;
  END;
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
    EXECUTE 'CREATE INDEX messages_search_trgm ON messages USING gin (search_body gin_trgm_ops) WHERE search_body IS NOT NULL';
  END IF;
END
$$;

-- Pinned messages per room: the `pins` list after a restart and beyond the broker's log.
-- One row per (room, message); `present` false once unpinned (or its message deleted), and
-- `seq` the event that set it, so that a change applied late or twice never undoes a newer one.
CREATE TABLE pins (
  room      text        NOT NULL,
  msg_id    text        NOT NULL,
  msg_seq   bigint      NOT NULL,
  by_id     text        NOT NULL,
  by_name   text        NOT NULL,
  pinned_at timestamptz NOT NULL,
  present   boolean     NOT NULL,
  seq       bigint      NOT NULL,
  PRIMARY KEY (room, msg_id)
);
