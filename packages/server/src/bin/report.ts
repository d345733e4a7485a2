/**
 * npm run report -- daily --date YYYY-MM-DD [--out DIR] [--from-export DIR] | verify FILE
 * daily: builds the day's signed report (movements, transactions and, from the database, the
 *   reconciliation) into DIR (VBI_REPORT_DIR, var/reports); with --from-export, from a journal
 *   export instead (daily-<date>.from-export.json: the same activity, reproduced). Prints the
 *   totals and every reconciliation difference; runs beside the service.
 * verify: checks a report file's signature with the certificate it carries; exit code 1 if not.
 * docs/reports.md.
 */
import { readFile } from 'node:fs/promises';
import { loadConfig } from '../config/config';
import { openVerifier } from '../ops/verifier';
import { readExport, usable } from '../ledger/journal-export';
import { exportSource } from '../reports/report-source';
import { SignedReport, verifyReportSignature, writeDailyReport } from '../reports/report-file';
import { vbiError } from '@vbi/core/errors';
import { runMain } from '@vbi/core/cli/run-main';

function option(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<number> {
  const command = process.argv[2];
  if (command === 'verify') {
    const file = process.argv[3];
    if (!file) throw vbiError('BAD_REQUEST', 'usage: npm run report -- verify FILE');
    const doc = JSON.parse(await readFile(file, 'utf8')) as SignedReport;
    const ok = verifyReportSignature(doc);
    process.stdout.write(ok ? `report ${doc.report.activity.date} signature OK (module ${doc.signature.moduleSerial})\n` : 'report signature does NOT verify\n');
    return ok ? 0 : 1;
  }
  const date = option('--date');
  if (command !== 'daily' || !date) {
    process.stderr.write('usage: npm run report -- daily --date YYYY-MM-DD [--out DIR] [--from-export DIR] | verify FILE\n');
    return 2;
  }
  const config = loadConfig();
  const v = await openVerifier(config);
  try {
    const fromExport = option('--from-export');
    let source;
    if (fromExport) {
      const exp = await readExport(v.hsm, fromExport);
      if (!usable(exp.findings)) throw vbiError('JOURNAL_EXPORT_BROKEN', `the export in ${fromExport} does not verify: ${exp.findings[0].reason}`, { findings: exp.findings });
      source = exportSource(exp.entries);
    }
    let out;
    try {
      out = await writeDailyReport({ db: v.db.knex, hsm: v.hsm, date, dir: option('--out') ?? config.reportDir, source });
    } catch (e) {
      if (e instanceof RangeError) throw vbiError('BAD_REQUEST', e.message);
      throw e;
    }
    const { activity, reconciliation } = out.doc.report;
    process.stdout.write(`${out.path}\n`);
    process.stdout.write(`movements: ${activity.movements.totals.records} (downloaded ${activity.movements.totals.downloaded} mills, refunded ${activity.movements.totals.refunded})\n`);
    process.stdout.write(`transactions: ${activity.transactions.totals.indicia} indicia, ${activity.transactions.totals.postage} mills, ${activity.transactions.totals.meters} meter(s)\n`);
    if (reconciliation) {
      process.stdout.write(reconciliation.differences.length === 0 ? 'reconciliation: no difference\n' : `reconciliation: ${reconciliation.differences.length} difference(s)\n  ${reconciliation.differences.join('\n  ')}\n`);
    }
    return 0;
  } finally {
    await v.close();
  }
}

runMain(main);
