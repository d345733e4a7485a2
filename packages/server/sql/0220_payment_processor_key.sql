-- The key a payment is known by at the processor (its idempotency key): the payment id and a
-- random part, so that a payment id issued again after a point-in-time restore of this database
-- can never be answered with the authorization of the payment that had it before the restore.
-- Payments from before keep their plain id (NULL here), so a retry of one in flight finds its
-- first authorization. Runs inside a transaction opened by packages/server/src/db/migrations.ts.
ALTER TABLE payments ADD COLUMN processor_key text;
ALTER TABLE payments ALTER COLUMN processor_key SET DEFAULT substr(md5(random()::text || clock_timestamp()::text), 1, 16);
