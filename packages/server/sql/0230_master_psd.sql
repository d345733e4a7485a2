-- The vendor's master PSD (packages/server/src/module/commands/master-psd.ts, docs/ledger.md "The master PSD"):
-- the pool's registers as a sealed PSD package, a leaf of the meter map at the reserved last
-- slot, changed only by module commands. The columns purchased, available and refunds_paid stay
-- as copies of the package's registers. NULL until the first movement after this migration
-- seals it from the columns.
ALTER TABLE pool ADD COLUMN package bytea;
ALTER TABLE pool ADD COLUMN record_counter bigint;
