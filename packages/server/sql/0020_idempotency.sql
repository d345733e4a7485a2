-- Idempotency keys for purchase and print (packages/server/src/api/idempotency.ts). A client retrying a request
-- whose answer it never saw sends the same Idempotency-Key: the stored answer is replayed and
-- the command (a payment, a debit, an indicium) never runs twice.
-- Runs inside a transaction opened by packages/server/src/db/migrations.ts; no BEGIN/COMMIT here.

-- scope: the authenticated meter or account id; keys of different meters never collide.
-- request_hash: SHA-256 of method, path, query and canonical JSON body; the same key with
-- another request is refused (IDEMPOTENCY_KEY_REUSED).
-- The primary key makes the first INSERT ... ON CONFLICT DO NOTHING the only one that runs.
-- A row left 'in_progress' by a crash is never taken over automatically (the command may have
-- committed); purgeIdempotencyKeys() removes old rows.
CREATE TABLE idempotency_keys (
  scope        text NOT NULL CHECK (length(scope) BETWEEN 1 AND 200),
  key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 128),
  request_hash bytea NOT NULL CHECK (octet_length(request_hash) = 32),
  status       int CHECK (status BETWEEN 100 AND 599),
  response     jsonb,
  state        text NOT NULL DEFAULT 'in_progress' CHECK (state IN ('in_progress', 'done')),
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (scope, key),
  CHECK (state = 'in_progress' OR status IS NOT NULL)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
