/**
 * npm run verify-journal [-- --json]
 * Verifies the journal end to end (checkpoint MACs, module MACs, per-module hash chains, module
 * table) and reports the first broken row; then lists the modules' signed audit records, where
 * transactions discarded by auto-recovery show up. Exit code 1 when anything is broken.
 */
import { loadConfig } from '../src/config/config';
import { createService } from '../src/service';
import { verifyJournal } from '../src/ledger/journal-verify';
import { auditRecords } from '../src/ledger/audit-store';
import { conservation } from '../src/ledger/conservation';
import { isVbiError } from '../src/errors';

async function main(): Promise<number> {
  const service = await createService({ config: loadConfig() });
  try {
    const report = await verifyJournal({ db: service.db.knex, hsm: service.engines[0].hsm });
    const balance = await conservation(service.db.knex);
    const audit = await auditRecords(service.db.knex);
    if (process.argv.includes('--json')) {
      process.stdout.write(JSON.stringify({ journal: report, conservation: balance, audit }, null, 2) + '\n');
    } else {
      process.stdout.write(report.ok
        ? `journal OK: ${report.rowsChecked} rows, ${report.modules} module chain(s)\n`
        : `journal BROKEN at row ${report.firstBroken?.journalId} (module ${report.firstBroken?.moduleSerial} seq ${report.firstBroken?.seq}): ${report.firstBroken?.reason}\n`);
      process.stdout.write(balance.violations.length ? `conservation VIOLATED:\n  ${balance.violations.join('\n  ')}\n` : `conservation OK (system ${balance.system.left} mills)\n`);
      for (const a of audit) {
        process.stdout.write(`audit ${a.at} ${a.kind} module ${a.moduleSerial}: ${a.reason} ${JSON.stringify(a.details)}\n`);
      }
    }
    return report.ok && balance.violations.length === 0 ? 0 : 1;
  } finally {
    await service.close();
  }
}

main().then((c) => process.exit(c), (e) => {
  process.stderr.write(isVbiError(e) ? `${e.code}: ${e.message}\n` : `${(e as Error).stack}\n`);
  process.exit(1);
});
