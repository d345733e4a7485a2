-- Verification the post can trust (docs/indicium.md "Sightings and fraud cases"): sightings are
-- recorded only for authenticated postal verifiers (one credential per plant); a piece number
-- seen on two different indicia is a duplicate too; suspension follows a policy, not the first
-- repeat.
-- Runs inside a transaction opened by packages/server/src/db/migrations.ts; no BEGIN/COMMIT here.

-- One credential per plant (or per verifier); the bearer token itself is never stored.
CREATE TABLE postal_verifiers (
  verifier_id   text PRIMARY KEY CHECK (verifier_id ~ '^pv-[0-9a-f]{16}$'),
  plant         text NOT NULL CHECK (length(plant) BETWEEN 1 AND 64),
  token_sha256  bytea NOT NULL UNIQUE CHECK (octet_length(token_sha256) = 32),
  created_at    timestamptz NOT NULL DEFAULT now(),
  revoked_at    timestamptz
);

-- The plant of the first sighting, and a piece number (meter, sequence) seen once: a second,
-- different indicium with the same number conflicts here and is a duplicate.
ALTER TABLE indicium_scans ADD COLUMN first_plant text;
DROP INDEX indicium_scans_meter;
CREATE UNIQUE INDEX indicium_scans_piece ON indicium_scans (meter_id, sequence);

ALTER TABLE fraud_reports DROP CONSTRAINT fraud_reports_kind_check;
ALTER TABLE fraud_reports ADD CONSTRAINT fraud_reports_kind_check CHECK (kind IN ('duplicate_indicium', 'duplicate_piece_number'));
