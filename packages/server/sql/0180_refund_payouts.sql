-- Refunds paid back to the mailer through the payment processor (packages/server/src/mailer/refund-payout.ts):
-- a refund row is 'due' when its command commits, 'paid' once the processor refunded it against
-- the meter's captured payments, 'unpaid' when those cannot cover it (the rest is paid by hand;
-- the reconciliation lists it). One row per (refund, payment) the payout used.
-- Runs inside a transaction opened by packages/server/src/db/migrations.ts; no BEGIN/COMMIT here.
ALTER TABLE refunds ADD COLUMN payout_status text NOT NULL DEFAULT 'due' CHECK (payout_status IN ('due', 'paid', 'unpaid'));
ALTER TABLE refunds ADD COLUMN paid_at timestamptz;
CREATE TABLE refund_payouts (
  refund_id   bigint NOT NULL REFERENCES refunds (refund_id),
  payment_id  bigint NOT NULL REFERENCES payments (payment_id),
  amount      bigint NOT NULL CHECK (amount > 0),
  payout_ref  text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (refund_id, payment_id)
);
CREATE INDEX refund_payouts_payment ON refund_payouts (payment_id);
CREATE INDEX refunds_due ON refunds (refund_id) WHERE payout_status = 'due';
