-- A revocation report of a licence the authority says it does not have (docs/licensing.md,
-- "Revocation"): `unknown`, not sent again (last_error says what the authority answered).
-- Runs inside a transaction opened by packages/server/src/db/migrations.ts; no BEGIN/COMMIT here.
ALTER TABLE licence_revocation_reports DROP CONSTRAINT licence_revocation_reports_status_check;
ALTER TABLE licence_revocation_reports ADD CONSTRAINT licence_revocation_reports_status_check CHECK (status IN ('due', 'reported', 'unknown'));
