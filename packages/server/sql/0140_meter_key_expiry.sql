-- Non-secret copy of the package's indicium key expiry (the certificate's notAfter, or earlier
-- with a configured key lifetime), written with every command like cert_serial: the service's
-- renewal schedule (packages/server/src/pki/key-renewal-schedule.ts) finds the keys due by it.
-- Runs inside a transaction opened by packages/server/src/db/migrations.ts; no BEGIN/COMMIT here.
ALTER TABLE meters ADD COLUMN key_expiry timestamptz;
CREATE INDEX meters_key_expiry ON meters (key_expiry) WHERE key_expiry IS NOT NULL;
