-- Registration step 1c is only for the meter step 1a handed out, to whoever asked for it: 1a
-- returns a random registration token (only its SHA-256 is kept here) that 1c must present, once.
-- Runs inside a transaction opened by packages/server/src/db/migrations.ts; no BEGIN/COMMIT here.
ALTER TABLE license_requests ADD COLUMN token_hash bytea CHECK (octet_length(token_hash) = 32);
ALTER TABLE license_requests ADD COLUMN completed_at timestamptz;
CREATE INDEX license_requests_meter ON license_requests (meter_id);
