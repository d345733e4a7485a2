/**
 * npm run audit -- verify [--json] | list
 * verify: checks every module's signed audit chain (signatures, numbering, links) against the
 * head its token holds, and lists every gap, edit, reordering, record beyond or behind the head
 * and break the service recorded; exit code 1 when anything is found (docs/audit.md).
 * list: prints the records in the order they were stored.
 * Runs beside the service (it writes nothing to the tokens).
 */
import { loadConfig } from '../config/config';
import { openVerifier } from '../ops/verifier';
import { auditRecords } from '../ledger/audit-store';
import { verifyAuditLog } from '../ledger/audit-verify';
import { readAuditHead } from '../module/audit-chain';
import { runMain } from '@vbi/core/cli/run-main';

async function main(): Promise<number> {
  const command = process.argv[2];
  if (command !== 'verify' && command !== 'list') {
    process.stderr.write('usage: npm run audit -- verify [--json] | list\n');
    return 2;
  }
  const v = await openVerifier(loadConfig());
  try {
    if (command === 'list') {
      for (const a of await auditRecords(v.db.knex)) {
        process.stdout.write(`${a.moduleSerial}#${a.seq ?? '-'} ${a.at} ${a.kind}: ${a.reason} ${JSON.stringify(a.details)}\n`);
      }
      return 0;
    }
    const keys = [];
    for (const m of v.modules) keys.push({ serial: m.serial, identitySpki: m.identityPublicKey(), head: await readAuditHead(m) });
    const report = await verifyAuditLog(v.db.knex, keys);
    if (process.argv.includes('--json')) {
      process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    } else {
      for (const m of report.modules) process.stdout.write(`module ${m.serial}: ${m.records} record(s), last ${m.lastSeq ?? '-'}, token head ${m.headSeq ?? '-'}\n`);
      process.stdout.write(report.ok
        ? 'audit log OK\n'
        : `audit log BROKEN: ${report.findings.length} finding(s)\n${report.findings.map((f) => `  ${f.kind} module ${f.moduleSerial}${f.seq !== undefined ? `#${f.seq}` : ''}${f.auditId !== undefined ? ` (row ${f.auditId})` : ''}: ${f.reason}`).join('\n')}\n`);
    }
    return report.ok ? 0 : 1;
  } finally {
    await v.close();
  }
}

runMain(main);
