-- Stock from the post is signed (docs/ledger.md, "Stock from the post"): every purchase is a
-- `pool-purchased` record in a module's signed audit chain, written in the purchase's own
-- transaction, and conservation counts only signed stock. Stock entered before this migration
-- (operator purchases were already audited; others were not) is kept apart as the unsigned
-- baseline: pool.purchased = purchased_unsigned + the signed purchases.
-- Runs inside a transaction opened by packages/server/src/db/migrations.ts; no BEGIN/COMMIT here.
ALTER TABLE pool ADD COLUMN purchased_unsigned bigint NOT NULL DEFAULT 0 CHECK (purchased_unsigned >= 0);
UPDATE pool SET purchased_unsigned = GREATEST(0, purchased - (
  SELECT COALESCE(SUM((record->'details'->>'amount')::bigint), 0)
    FROM (SELECT DISTINCT ON (record->'details'->>'reference') record FROM audit_log WHERE kind = 'pool-purchased'
           ORDER BY record->'details'->>'reference', audit_id) signed
));
