-- Licensing (docs/licensing.md): each registration's licence request goes to the postal licensing
-- authority (CMLS) once step 1c committed; the licensing pass retries the pending ones. The row is
-- the queue and its history; the meter's licence itself is in its sealed package (tag 15), which
-- is what the module checks before it prints: editing a row here licenses nothing.
--   registering  step 1a done, 1c not yet (nothing sent)
--   pending      1c committed: to send, or sent and not decided (authority_ref names it there)
--   licensed     the authority approved and the module's `license` command committed (licence_id)
--   refused      the authority refused (reason), or its licence could not be applied (reason)
--   revoked      an operator revoked the licence (revoked_at, reason)
-- Runs inside a transaction opened by packages/server/src/db/migrations.ts; no BEGIN/COMMIT here.
ALTER TABLE license_requests DROP CONSTRAINT IF EXISTS license_requests_status_check;
-- Rows from before licensing were all 'submitted' (nothing read them). A completed registration
-- belongs to a meter whose package has no licence tag and decodes as licensed (grandfathered);
-- an unfinished one is licensed through the authority once its step 1c commits.
UPDATE license_requests SET status = CASE WHEN completed_at IS NULL THEN 'registering' ELSE 'licensed' END;
ALTER TABLE license_requests ALTER COLUMN status SET DEFAULT 'registering';
ALTER TABLE license_requests ADD CONSTRAINT license_requests_status_check
  CHECK (status IN ('registering', 'pending', 'licensed', 'refused', 'revoked'));
ALTER TABLE license_requests ADD COLUMN licence_id text;
ALTER TABLE license_requests ADD COLUMN reason text;
ALTER TABLE license_requests ADD COLUMN authority_ref text;
ALTER TABLE license_requests ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE license_requests ADD COLUMN last_attempt_at timestamptz;
ALTER TABLE license_requests ADD COLUMN last_error text;
ALTER TABLE license_requests ADD COLUMN decided_at timestamptz;
ALTER TABLE license_requests ADD COLUMN revoked_at timestamptz;
UPDATE license_requests SET decided_at = completed_at, reason = 'registered before licensing: grandfathered (its package carries no licence tag)'
  WHERE status = 'licensed';
CREATE INDEX license_requests_pending ON license_requests (request_id) WHERE status = 'pending';
