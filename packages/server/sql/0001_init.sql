-- Transaction engine schema (docs/ledger.md). Runs inside a transaction opened by
-- packages/server/src/db/migrations.ts; no BEGIN/COMMIT here. Money columns are bigint mills.
--
-- The database is outside the security boundary: packages are sealed by the modules, checkpoint
-- records and journal rows carry module MACs. Meters and journal are hash-partitioned by meter id
-- so PostgreSQL (or Citus, distributing on meter_id) can spread them; docs/ledger.md.

CREATE TABLE accounts (
  account_id    bigserial PRIMARY KEY,
  name          text NOT NULL,
  licensing_zip char(5) NOT NULL CHECK (licensing_zip ~ '^[0-9]{5}$'),
  created_at    timestamptz NOT NULL DEFAULT now()
);

-- The cryptographic module table: one row per module (token serial) with its latest
-- checkpoint record as the database holds it.
CREATE TABLE modules (
  module_serial   text PRIMARY KEY,
  token_label     text NOT NULL,
  checkpoint      bytea,
  checkpoint_seq  bigint,
  last_tx_at      timestamptz,
  last_tx_type    text,
  last_tx_amount  bigint,
  in_rotation     boolean NOT NULL DEFAULT true,
  out_reason      text,
  updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE meters (
  meter_id        text NOT NULL,
  account_id      bigint REFERENCES accounts (account_id),
  state           text NOT NULL CHECK (state IN ('unassigned', 'active', 'suspended', 'closed')),
  record_counter  bigint NOT NULL CHECK (record_counter >= 0),
  package         bytea NOT NULL,
  -- non-secret copies for lookups and reports; the sealed package is the authority
  ascending_register  bigint NOT NULL,
  descending_register bigint NOT NULL,
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (meter_id)
) PARTITION BY HASH (meter_id);
CREATE TABLE meters_p0 PARTITION OF meters FOR VALUES WITH (MODULUS 4, REMAINDER 0);
CREATE TABLE meters_p1 PARTITION OF meters FOR VALUES WITH (MODULUS 4, REMAINDER 1);
CREATE TABLE meters_p2 PARTITION OF meters FOR VALUES WITH (MODULUS 4, REMAINDER 2);
CREATE TABLE meters_p3 PARTITION OF meters FOR VALUES WITH (MODULUS 4, REMAINDER 3);
CREATE INDEX meters_account ON meters (account_id);

-- Append-only record of every module command. Each row carries the module's checkpoint record
-- (MAC'd; its prevDigest chains a module's rows) and a module MAC over checkpoint || payload,
-- so a deleted, reordered or edited row is detectable (packages/server/src/bin/verify-journal).
CREATE TABLE journal (
  journal_id      bigserial,
  meter_id        text NOT NULL,
  module_serial   text NOT NULL,
  checkpoint_seq  bigint NOT NULL,
  tx_type         text NOT NULL,
  amount          bigint NOT NULL,
  ascending_register  bigint NOT NULL,
  descending_register bigint NOT NULL,
  checkpoint      bytea NOT NULL,
  payload         bytea NOT NULL,
  module_mac      bytea NOT NULL,
  created_at      timestamptz NOT NULL,
  PRIMARY KEY (meter_id, journal_id)
) PARTITION BY HASH (meter_id);
CREATE TABLE journal_p0 PARTITION OF journal FOR VALUES WITH (MODULUS 4, REMAINDER 0);
CREATE TABLE journal_p1 PARTITION OF journal FOR VALUES WITH (MODULUS 4, REMAINDER 1);
CREATE TABLE journal_p2 PARTITION OF journal FOR VALUES WITH (MODULUS 4, REMAINDER 2);
CREATE TABLE journal_p3 PARTITION OF journal FOR VALUES WITH (MODULUS 4, REMAINDER 3);
CREATE INDEX journal_module_seq ON journal (module_serial, checkpoint_seq);
CREATE INDEX journal_meter_latest ON journal (meter_id, journal_id DESC);

-- No UPDATE or DELETE through the service's role: the journal is append-only.
CREATE FUNCTION journal_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'journal is append-only';
END $$;
CREATE TRIGGER journal_no_update BEFORE UPDATE OR DELETE ON journal
  FOR EACH ROW EXECUTE FUNCTION journal_append_only();

CREATE TABLE indicia (
  indicium_id     bigserial PRIMARY KEY,
  meter_id        text NOT NULL,
  sequence        bigint NOT NULL,
  kind            text NOT NULL CHECK (kind IN ('postage', 'correction')),
  postage         bigint NOT NULL CHECK (postage >= 0),
  corrects        bigint REFERENCES indicia (indicium_id),
  data            bytea NOT NULL,
  signature       bytea NOT NULL,
  module_serial   text NOT NULL,
  checkpoint_seq  bigint NOT NULL,
  created_at      timestamptz NOT NULL,
  UNIQUE (meter_id, sequence)
);

-- The vendor's master PSD registers (WO 99/41690, "Master PSD 40"): postage bought from the post and not yet sold
-- to meters, and what left the system as refunds.
CREATE TABLE pool (
  pool_id         smallint PRIMARY KEY CHECK (pool_id = 1),
  purchased       bigint NOT NULL CHECK (purchased >= 0),
  available       bigint NOT NULL CHECK (available >= 0),
  refunds_paid    bigint NOT NULL CHECK (refunds_paid >= 0),
  updated_at      timestamptz NOT NULL DEFAULT now()
);
INSERT INTO pool (pool_id, purchased, available, refunds_paid) VALUES (1, 0, 0, 0);

CREATE TABLE pool_purchases (
  purchase_id     bigserial PRIMARY KEY,
  amount          bigint NOT NULL CHECK (amount > 0),
  reference       text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE payments (
  payment_id      bigserial PRIMARY KEY,
  meter_id        text NOT NULL,
  amount          bigint NOT NULL CHECK (amount > 0),
  provider        text NOT NULL,
  provider_ref    text,
  status          text NOT NULL CHECK (status IN ('pending', 'approved', 'declined', 'applied')),
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE refunds (
  refund_id       bigserial PRIMARY KEY,
  meter_id        text NOT NULL,
  kind            text NOT NULL CHECK (kind IN ('partial', 'full')),
  amount          bigint NOT NULL CHECK (amount >= 0),
  reason          text NOT NULL,
  module_serial   text NOT NULL,
  checkpoint_seq  bigint NOT NULL,
  created_at      timestamptz NOT NULL
);

-- Signed audit records emitted by the modules (auto-recovery, inhibition, reinstatement).
CREATE TABLE audit_log (
  audit_id        bigserial PRIMARY KEY,
  kind            text NOT NULL,
  module_serial   text NOT NULL,
  at              timestamptz NOT NULL,
  record          jsonb NOT NULL
);
