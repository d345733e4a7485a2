-- Operator credentials (packages/server/src/api/credentials.ts): the /v1/operator routes (fraud cases, meter
-- reactivation) take one. The bearer token itself is never stored.
-- Runs inside a transaction opened by packages/server/src/db/migrations.ts; no BEGIN/COMMIT here.
CREATE TABLE operators (
  operator_id   text PRIMARY KEY CHECK (operator_id ~ '^op-[0-9a-f]{16}$'),
  name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
  token_sha256  bytea NOT NULL UNIQUE CHECK (octet_length(token_sha256) = 32),
  created_at    timestamptz NOT NULL DEFAULT now(),
  revoked_at    timestamptz
);
