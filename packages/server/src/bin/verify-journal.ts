/**
 * npm run verify-journal [-- --json] [--export [DIR]]
 * Verifies the journal end to end (checkpoint MACs, module MACs, per-module hash chains, map
 * epochs, the meter map rebuilt from the journal, meter and indicium rows against it, module
 * table), lists every finding (edited, inserted, deleted, reordered rows; map and indicium
 * mismatches), checks conservation on the registers of the sealed packages, and lists the
 * modules' signed audit records (inhibitions, roll-forwards, stale packages, reinstatements).
 * Exit code 1 when anything is wrong. Runs beside the service (it writes nothing to the token).
 * --export [DIR]: verifies the journal export instead (DIR defaults to VBI_JOURNAL_EXPORT_DIR), as
 * `npm run journal -- verify` does (docs/journal-export.md).
 */
import { loadConfig } from '../config/config';
import { openVerifier } from '../ops/verifier';
import { verifyJournal } from '../ledger/journal-verify';
import { auditRecords } from '../ledger/audit-store';
import { conservation } from '../ledger/conservation';
import { readExport } from '../ledger/journal-export';
import { runMain } from '@vbi/core/cli/run-main';

async function main(): Promise<number> {
  const config = loadConfig();
  const v = await openVerifier(config);
  try {
    const at = process.argv.indexOf('--export');
    if (at >= 0) {
      const next = process.argv[at + 1];
      const dir = next && !next.startsWith('--') ? next : config.journalExportDir;
      const r = await readExport(v.hsm, dir);
      if (process.argv.includes('--json')) {
        process.stdout.write(JSON.stringify({ ok: r.findings.length === 0, entries: r.entries.length, auditRecords: r.audit.length, segments: r.seals.length, findings: r.findings }, null, 2) + '\n');
      } else if (r.seals.length === 0 && r.findings.length === 0) {
        process.stdout.write(`no journal export in ${dir}\n`);
        return 1;
      } else {
        process.stdout.write(r.findings.length === 0
          ? `journal export OK: ${r.entries.length} entries and ${r.audit.length} audit record(s) in ${r.seals.length} sealed segment(s)\n`
          : `journal export BROKEN: ${r.findings.length} finding(s)\n${r.findings.map((f) => `  ${f.segment !== undefined ? `segment ${f.segment} ` : ''}${f.n !== undefined ? `entry ${f.n} ` : ''}${f.reason}`).join('\n')}\n`);
      }
      return r.findings.length === 0 ? 0 : 1;
    }
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

runMain(main);
