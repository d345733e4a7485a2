-- Authorise, download, then capture (packages/server/src/payments/payment-provider.ts): an applied payment is
-- captured at the processor after its download committed; captured_at records when. Applied and
-- not captured: the service's capture pass tries again (a crash or a link failure in between).
-- Runs inside a transaction opened by packages/server/src/db/migrations.ts; no BEGIN/COMMIT here.
ALTER TABLE payments ADD COLUMN captured_at timestamptz;
CREATE INDEX payments_uncaptured ON payments (payment_id) WHERE status = 'applied' AND captured_at IS NULL;
