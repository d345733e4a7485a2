/**
 * npm run journal -- export [--to DIR] | verify [--from DIR] [--json] | replay [--from DIR] [--json]
 * export: appends the journal rows not yet exported to the export (one sealed segment per run);
 *   runs beside the service.
 * verify: checks the export (seals, line chain, records, packages, module chains); exit code 1
 *   with the findings when it does not verify.
 * replay: rolls a restored database forward from the export; refuses while the service runs
 *   (it takes the module and map leases). Lists, per module, what its ring holds beyond the
 *   database afterwards (postage presumed spent) and what an export does not rebuild.
 *   --stock REFERENCE=AMOUNT (repeatable, dollars) enters stock bought from the post after the
 *   restore point first, in the same transaction.
 * DIR defaults to VBI_JOURNAL_EXPORT_DIR (var/journal-export). docs/journal-export.md.
 */
import { loadConfig } from '../config/config';
import { openVerifier } from '../ops/verifier';
import { exportJournal, readExport } from '../ledger/journal-export';
import { replayJournal } from '../ledger/journal-replay';
import { Lease, mapShardResource, moduleResource } from '../ledger/module-lease';
import { vbiError } from '@vbi/core/errors';
import { parseMills } from '@vbi/client/client/money';
import { withTranscript } from '../ops/transcript';
import { runMain } from '@vbi/core/cli/run-main';

function option(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<number> {
  const command = process.argv[2];
  if (command !== 'export' && command !== 'verify' && command !== 'replay') {
    process.stderr.write('usage: npm run journal -- export [--to DIR] | verify [--from DIR] [--json] | replay [--from DIR] [--stock REF=AMOUNT]... [--json]\n');
    return 2;
  }
  const config = loadConfig();
  const dir = option(command === 'export' ? '--to' : '--from') ?? config.journalExportDir;
  const json = process.argv.includes('--json');
  return withTranscript({ dir: config.transcriptDir, procedure: `journal-${command}`, argv: process.argv.slice(2) }, async (t) => {
    const v = await openVerifier(config);
    try {
      if (command === 'export') {
        const out = await exportJournal({ db: v.db.knex, hsm: v.hsm, dir });
        t.report({ dir, ...out, sealedBy: v.hsm.serial });
        t.out(out.segment === null
          ? `nothing new: the export in ${dir} holds all ${out.total} journal rows\n`
          : `segment ${out.segment}: ${out.entries} journal row(s) exported, ${out.total} in all, and ${out.audit} audit record(s); sealed by module ${v.hsm.serial}\n`);
        return 0;
      }
      if (command === 'verify') {
        const r = await readExport(v.hsm, dir);
        t.report({ dir, ok: r.findings.length === 0, entries: r.entries.length, segments: r.seals.length, findings: r.findings });
        if (json) t.out(JSON.stringify({ ok: r.findings.length === 0, entries: r.entries.length, auditRecords: r.audit.length, segments: r.seals.length, findings: r.findings }, null, 2) + '\n');
        else {
          t.out(r.findings.length === 0
            ? `journal export OK: ${r.entries.length} entries in ${r.seals.length} sealed segment(s), and ${r.audit.length} audit record(s)\n`
            : `journal export BROKEN: ${r.findings.length} finding(s)\n${r.findings.map((f) => `  ${f.segment !== undefined ? `segment ${f.segment} ` : ''}${f.n !== undefined ? `entry ${f.n} ` : ''}${f.moduleSerial ? `module ${f.moduleSerial}#${f.seq} ` : ''}${f.reason}`).join('\n')}\n`);
        }
        return r.findings.length === 0 ? 0 : 1;
      }
      // replay: no process of the service may use the database or the tokens meanwhile
      const leases: Lease[] = [];
      try {
        leases.push(await Lease.acquire({ url: () => v.db.primaryUrl(), resource: mapShardResource(config.shard) }));
        for (const m of v.modules) leases.push(await Lease.acquire({ url: () => v.db.primaryUrl(), resource: moduleResource(m.serial) }));
        // --stock REFERENCE=AMOUNT (repeatable): stock bought from the post after the restore point
        const stock = process.argv.flatMap((a, i) => (a === '--stock' ? [process.argv[i + 1] ?? ''] : [])).map((s) => {
          const at = s.lastIndexOf('=');
          if (at <= 0) throw vbiError('BAD_REQUEST', `--stock takes REFERENCE=AMOUNT (dollars), not '${s}'`);
          return { reference: s.slice(0, at), amount: parseMills(s.slice(at + 1), '--stock') };
        });
        const report = await replayJournal({ db: v.db.knex, hsm: v.hsm, modules: v.modules, dir, stock });
        t.report({ dir, ...report });
        if (json) t.out(JSON.stringify(report, null, 2) + '\n');
        else {
          t.out(`replayed ${report.replayed} record(s) and ${report.auditRecords} audit record(s) from ${dir}\n`);
          for (const m of report.modules) {
            t.out(`module ${m.moduleSerial}: ${m.replayed} replayed, database at ${m.databaseSeq ?? '-'}, ring at ${m.ringSeq ?? '-'}: ${m.state}\n`);
            for (const x of m.missing) {
              t.out(`  presumed spent: #${x.seq} ${x.at} meter ${x.meterId} ${x.type} ${x.amount} mills (AR ${x.ascendingRegister}, DR ${x.descendingRegister})\n`);
            }
          }
          for (const x of report.stockFromRecords) t.out(`stock bought from the post entered from its signed record: ${x.reference} ${x.amount} mills\n`);
          t.out(`not rebuilt from an export:\n  ${report.notRebuilt.join('\n  ')}\n`);
          for (const x of report.indiciaLeftOut) t.out(`indicium row ${x.indiciumId} left out: ${x.reason}\n`);
        }
        return report.modules.some((m) => m.state === 'ring-ahead') ? 3 : 0;
      } finally {
        for (const l of leases) await l.release();
      }
    } finally {
      await v.close();
    }
  });
}

runMain(main);
