-- A journal that can rebuild (docs/journal-export.md): each row keeps the sealed package the
-- command produced. Its SHA-256 is the packageDigest of the row's MAC'd checkpoint record, so a
-- changed package is caught without another MAC; it holds the meter's wrapped secrets (indicium
-- key, user secrets), sealed by module keys as in the meters table. NULL on rows written before
-- this column and on reinstatement rows (no meter).
-- Runs inside a transaction opened by packages/server/src/db/migrations.ts; no BEGIN/COMMIT here.
ALTER TABLE journal ADD COLUMN package bytea;
