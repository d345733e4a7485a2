-- Stock bought from the post is entered by an operator with the post's reference
-- (POST /v1/operator/pool/purchases): one purchase per reference, so a retried request cannot
-- enter the same stock twice, and who entered it.
-- Runs inside a transaction opened by packages/server/src/db/migrations.ts; no BEGIN/COMMIT here.
CREATE UNIQUE INDEX pool_purchases_reference ON pool_purchases (reference);
ALTER TABLE pool_purchases ADD COLUMN entered_by text;
