-- Crash-safe protocol (docs/protocol.md "Recovery"): every request behind an Idempotency-Key can
-- be finished from durable state after its process died, and every committed indicium can be
-- fetched again by its owner.
-- Runs inside a transaction opened by packages/server/src/db/migrations.ts; no BEGIN/COMMIT here.

-- owner: the instance id of the process running the request (it holds the advisory lock
-- "instance <id>" while it lives). A row 'in_progress' whose owner is gone (or NULL: its
-- request failed with a 5xx) is taken over by the next retry, which resumes the request.
ALTER TABLE idempotency_keys ADD COLUMN owner text CHECK (owner ~ '^[0-9a-f]{32}$');

-- The meter's record counter after the command (the receipt's `sequence`) and the receipt the
-- module signed, for the resync exchange's list of transactions.
ALTER TABLE journal ADD COLUMN sequence bigint;
ALTER TABLE journal ADD COLUMN receipt jsonb;
CREATE INDEX journal_meter_sequence ON journal (meter_id, sequence);

-- One row per authorised print or correction request, written in the authorisation's
-- transaction: its answer ("answer": the next challenge is in it) and the request's Idempotency-Key.
-- outcomes: items refused or voided so far, {"<index>": {"status", "reason"}} (best effort).
CREATE TABLE print_batches (
  batch_id        text PRIMARY KEY CHECK (batch_id ~ '^[0-9a-f]{16}$'),
  meter_id        text NOT NULL,
  kind            text NOT NULL CHECK (kind IN ('print', 'correction')),
  idempotency_key text CHECK (length(idempotency_key) BETWEEN 1 AND 128),
  session_id      text NOT NULL,
  items           int NOT NULL CHECK (items BETWEEN 1 AND 500),
  answer          jsonb NOT NULL,
  outcomes        jsonb NOT NULL DEFAULT '{}',
  created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX print_batches_key ON print_batches (meter_id, idempotency_key, created_at);

-- Each printed item remembers its batch, place and answer (the same bytes are sent again).
ALTER TABLE indicia ADD COLUMN batch_id text REFERENCES print_batches (batch_id);
ALTER TABLE indicia ADD COLUMN item_index int;
ALTER TABLE indicia ADD COLUMN counter bigint;
ALTER TABLE indicia ADD COLUMN encrypted_indicium bytea;
ALTER TABLE indicia ADD COLUMN receipt jsonb;
CREATE UNIQUE INDEX indicia_batch_item ON indicia (batch_id, item_index) WHERE batch_id IS NOT NULL;

-- A purchase's payment carries the request's Idempotency-Key: a retry continues that payment
-- (charging it again under the same payment id is idempotent at the processor), never a new one.
ALTER TABLE payments ADD COLUMN idempotency_key text;
CREATE INDEX payments_meter_key ON payments (meter_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
