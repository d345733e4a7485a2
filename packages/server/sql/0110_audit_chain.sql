-- The signed audit log becomes one hash chain per module (packages/server/src/module/audit-chain.ts): each
-- record carries its sequence number in the module's chain (also in the signed record itself).
-- Records written before the chain have no number and are reported as unchained by
-- `npm run audit -- verify`. A number appears once per module.
-- Runs inside a transaction opened by packages/server/src/db/migrations.ts; no BEGIN/COMMIT here.
ALTER TABLE audit_log ADD COLUMN seq bigint CHECK (seq > 0);
CREATE UNIQUE INDEX audit_log_module_seq ON audit_log (module_serial, seq);
