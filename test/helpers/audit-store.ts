import { AuditRecord } from '@vbi/server/module/audit';
import { AuditStore } from '@vbi/server/module/audit-chain';

/**
 * An audit store in memory for tests of one engine without a database (the records are the
 * module's real, signed and chained ones; the token holds the real head). The service's store is
 * PostgreSQL's (packages/server/src/ledger/audit-store.ts), tested in test/module/audit-chain.test.ts.
 */
export function memoryAuditStore(): AuditStore & { records: AuditRecord[] } {
  const records: AuditRecord[] = [];
  return {
    records,
    last: async (serial) => records.filter((r) => r.moduleSerial === serial).sort((a, b) => b.seq - a.seq)[0] ?? null,
    insert: async (r) => { records.push(r); },
  };
}
