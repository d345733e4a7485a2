-- Duplicate detection for indicia scanned in the mail stream (WO 99/41690: fraud is "detecting the
-- same evidence of payment more than one time"), and the fraud reports it raises.
-- Runs inside a transaction opened by packages/server/src/db/migrations.ts; no BEGIN/COMMIT here.

-- One row per distinct indicium ever scanned: where and when it was first seen.
-- indicium_digest is SHA-256 of the signed data (packages/core/src/indicium/digest.ts), not of the signature.
-- The primary key is the unique index that makes ScanStore.record() race-free:
-- INSERT ... ON CONFLICT DO NOTHING lets exactly one concurrent scan be the first.
CREATE TABLE indicium_scans (
  indicium_digest bytea PRIMARY KEY CHECK (octet_length(indicium_digest) = 32),
  meter_id        text NOT NULL,
  sequence        bigint NOT NULL CHECK (sequence >= 0),
  first_seen_at   timestamptz NOT NULL,
  first_location  text NOT NULL
);
CREATE INDEX indicium_scans_meter ON indicium_scans (meter_id, sequence);

-- Evidence for the postal authority and the operators; written by the verifier's onDuplicate
-- policy (packages/server/src/indicium/fraud-report.ts). Suspending the meter is the transaction engine's job.
CREATE TABLE fraud_reports (
  fraud_report_id bigserial PRIMARY KEY,
  kind            text NOT NULL CHECK (kind IN ('duplicate_indicium')),
  meter_id        text NOT NULL,
  indicium_digest bytea,
  details         jsonb NOT NULL DEFAULT '{}'::jsonb,
  reported_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fraud_reports_meter ON fraud_reports (meter_id, reported_at);
