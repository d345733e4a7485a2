-- Revocations reported to the licensing authority (docs/licensing.md, "Revocation"): the outbox of
-- the vendor's revocations. Ledger.revokeLicence writes the row in the revoke-licence command's own
-- transaction when the meter's package held a licence number; the licensing pass reports every
-- `due` row and marks it `reported`, or leaves it due with last_error (asked again at the next
-- pass). A meter revoked without a licence number (never licensed by the authority, or
-- grandfathered) gets no row: the authority has no licence of it to revoke. Revocations made
-- before this migration are not reported (there was no real authority adapter then).
--   due       to report (attempts, last_attempt_at, last_error)
--   reported  the authority recorded it (reported_at)
-- Runs inside a transaction opened by packages/server/src/db/migrations.ts; no BEGIN/COMMIT here.
CREATE TABLE licence_revocation_reports (
  meter_id        text PRIMARY KEY,            -- a licence is revoked once: one row per meter
  licence_id      text NOT NULL,               -- the authority's licence number, from the package
  reason          text NOT NULL,               -- the operator's reason, as sent
  revoked_at      timestamptz NOT NULL,        -- when the revoke-licence command committed
  status          text NOT NULL DEFAULT 'due' CHECK (status IN ('due', 'reported')),
  attempts        integer NOT NULL DEFAULT 0,
  last_attempt_at timestamptz,
  last_error      text,
  reported_at     timestamptz,
  CHECK ((status = 'reported') = (reported_at IS NOT NULL))
);
CREATE INDEX licence_revocation_reports_due ON licence_revocation_reports (last_attempt_at NULLS FIRST, meter_id) WHERE status = 'due';
