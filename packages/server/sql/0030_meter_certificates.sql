-- Certificates of indicium keys, by serial (MeterGen, renewal). Never deleted on renewal: indicia
-- printed before a renewal carry the old serial and must keep verifying.
CREATE TABLE certificates (
  serial_hex      text PRIMARY KEY,
  meter_id        text NOT NULL,
  certificate_der bytea NOT NULL,
  not_before      timestamptz NOT NULL,
  not_after       timestamptz NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX certificates_meter ON certificates (meter_id);

-- A renewal in progress: the next indicium key, wrapped under the package KEK, until its
-- certificate is swapped into the package.
CREATE TABLE key_renewals (
  renewal_id      text PRIMARY KEY,
  meter_id        text NOT NULL,
  algorithm       text NOT NULL,
  wrapped_key     bytea NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now()
);

-- Non-secret copy of the package's certificate serial: MeterGen's pool of certified,
-- unassigned meters is `state = 'unassigned' AND cert_serial IS NOT NULL`.
ALTER TABLE meters ADD COLUMN cert_serial text;
