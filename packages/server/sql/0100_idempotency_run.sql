-- Each run of a request behind an Idempotency-Key (the first, or a retry that took the row over)
-- gets its own run id: a run records its answer, or releases the row after a 5xx, only while the
-- row is still that run's. Without it, the delayed release of a run whose database went away
-- could clear the owner of the retry that had taken the row over meanwhile, and that retry's
-- answer would not be recorded.
-- Runs inside a transaction opened by packages/server/src/db/migrations.ts; no BEGIN/COMMIT here.
ALTER TABLE idempotency_keys ADD COLUMN run_id text CHECK (run_id ~ '^[0-9a-f]{32}$');
