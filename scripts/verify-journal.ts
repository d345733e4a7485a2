/**
 * npm run verify-journal [-- --json]
 * Verifies the journal end to end (checkpoint MACs, module MACs, per-module hash chains, map
 * epochs, the meter map rebuilt from the journal, meter and indicium rows against it, module
 * table), lists every finding (edited, inserted, deleted, reordered rows; map and indicium
 * mismatches), checks conservation on the registers of the sealed packages, and lists the
 * modules' signed audit records (inhibitions, roll-forwards, stale packages, reinstatements).
 * Exit code 1 when anything is wrong. Runs beside the service (it writes nothing to the token).
 */
import { loadConfig } from '../src/config/config';
import { openVerifier } from '../src/ops/verifier';
import { verifyJournal } from '../src/ledger/journal-verify';
import { auditRecords } from '../src/ledger/audit-store';
import { conservation } from '../src/ledger/conservation';
import { isVbiError } from '../src/errors';

async function main(): Promise<number> {
  const v = await openVerifier(loadConfig());
  try {
    const report = await verifyJournal({ db: v.db.knex, hsm: v.hsm });
    const balance = await conservation(v.db.knex, { hsm: v.hsm });
    const audit = await auditRecords(v.db.knex);
    if (process.argv.includes('--json')) {
      process.stdout.write(JSON.stringify({ journal: report, conservation: balance, audit }, null, 2) + '\n');
    } else {
      process.stdout.write(report.ok
        ? `journal OK: ${report.rowsChecked} rows, ${report.modules} module chain(s)\n`
        : `journal BROKEN: ${report.findings.length} finding(s)\n${report.findings.map((f) => `  ${f.kind}${f.journalId !== undefined ? ` row ${f.journalId}` : ''}${f.moduleSerial ? ` module ${f.moduleSerial}#${f.seq}` : ''}${f.meterId ? ` meter ${f.meterId}` : ''}: ${f.reason}`).join('\n')}\n`);
      process.stdout.write(balance.violations.length ? `conservation VIOLATED:\n  ${balance.violations.join('\n  ')}\n` : `conservation OK (system ${balance.system.left} mills)\n`);
      for (const a of audit) {
        process.stdout.write(`audit ${a.at} ${a.kind} module ${a.moduleSerial}: ${a.reason} ${JSON.stringify(a.details)}\n`);
      }
    }
    return report.ok && balance.violations.length === 0 ? 0 : 1;
  } finally {
    await v.close();
  }
}

main().then((c) => process.exit(c), (e) => {
  process.stderr.write(isVbiError(e) ? `${e.code}: ${e.message}\n` : `${(e as Error).stack}\n`);
  process.exit(1);
});
