-- Placeholder first migration: the real schema replaces this file's body.
-- Runs inside a transaction opened by src/db/migrations.ts; do not add BEGIN/COMMIT.
CREATE SCHEMA IF NOT EXISTS vbi;
