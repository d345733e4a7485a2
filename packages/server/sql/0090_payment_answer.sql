-- The answer of the purchase that applied a payment, written in the download's transaction: a
-- retry of that purchase (same Idempotency-Key) after a crash is answered from it, once the
-- download's checkpoint record is in its module's ring (Ledger.ensureCheckpointed).
-- Runs inside a transaction opened by packages/server/src/db/migrations.ts; no BEGIN/COMMIT here.
ALTER TABLE payments ADD COLUMN answer jsonb;
