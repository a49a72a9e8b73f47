-- Webhook events not yet delivered, when PostgreSQL is on and Redis is not (one node): the
-- node loads them again at start, so a restart does not lose them. With Redis the queue is a
-- Redis stream and this table stays empty.
CREATE TABLE webhook_events (
  seq    bigserial PRIMARY KEY,
  id     text   NOT NULL UNIQUE,
  at     bigint NOT NULL,  -- epoch ms of the emit: the retry window counts from it
  event  text   NOT NULL   -- the encoded event JSON, sent as-is
);
