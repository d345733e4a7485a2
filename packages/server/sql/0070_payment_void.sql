-- A purchase whose download is refused after the charge (a concurrent request took the challenge
-- or the funds) voids the authorization at the processor: status 'voided', nothing downloaded.
-- Runs inside a transaction opened by packages/server/src/db/migrations.ts; no BEGIN/COMMIT here.
ALTER TABLE payments DROP CONSTRAINT payments_status_check;
ALTER TABLE payments ADD CONSTRAINT payments_status_check CHECK (status IN ('pending', 'approved', 'declined', 'applied', 'voided'));
