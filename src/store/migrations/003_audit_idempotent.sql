-- A retried audit batch (a write that timed out after PostgreSQL had committed it) must never
-- write a row twice: every entry carries a uuid made when it was queued, and a retry collides
-- on it (ON CONFLICT DO NOTHING). Rows written before this migration have none.
ALTER TABLE audit ADD COLUMN uid uuid;
CREATE UNIQUE INDEX audit_uid ON audit (uid);
