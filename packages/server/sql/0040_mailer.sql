-- The mailer's service (docs/protocol.md): license requests, sessions, payments of purchases,
-- module identity certificates handed to clients.
ALTER TABLE accounts ADD COLUMN return_address text[] NOT NULL DEFAULT '{}';

-- Recorded at registration for the postal licensing system (WO 99/41690), one per account.
CREATE TABLE license_requests (
  request_id      bigserial PRIMARY KEY,
  account_id      bigint NOT NULL REFERENCES accounts (account_id),
  meter_id        text NOT NULL,
  licensing_zip   char(5) NOT NULL,
  status          text NOT NULL DEFAULT 'submitted' CHECK (status IN ('submitted', 'granted', 'refused')),
  created_at      timestamptz NOT NULL DEFAULT now()
);

-- Continuous sessions (the secure on-line printing claims: dynamic passwords). The session key is wrapped under the meter's user-secrets key.
CREATE TABLE sessions (
  session_id      text PRIMARY KEY,
  meter_id        text NOT NULL,
  module_serial   text NOT NULL,
  wrapped_session_key bytea NOT NULL,
  counter         bigint NOT NULL DEFAULT 0,
  heartbeat_ms    integer NOT NULL,
  timeout_ms      integer NOT NULL,
  opened_at       timestamptz NOT NULL,
  last_seen_at    timestamptz NOT NULL,
  state           text NOT NULL CHECK (state IN ('open', 'closed', 'ended')),
  end_reason      text
);
CREATE INDEX sessions_meter ON sessions (meter_id);

ALTER TABLE payments ADD COLUMN method_kind text;
ALTER TABLE payments ADD COLUMN applied_checkpoint_seq bigint;

ALTER TABLE modules ADD COLUMN identity_certificate bytea;
ALTER TABLE modules ADD COLUMN identity_chain bytea[];
