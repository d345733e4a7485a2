/**
 * npm run meter -- <meter id> [--json]
 * Prints a meter's registers and its history from the journal (checkpoints verified, payloads
 * decrypted by a module). Uses DATABASE_URL, or the embedded cluster in var/pgdata.
 */
import { loadConfig } from '../config/config';
import { openVerifier } from '../ops/verifier';
import { millsText, meterHistory } from '../ops/meter-history';
import { runMain } from '@vbi/core/cli/run-main';

async function main(): Promise<number> {
  const meterId = process.argv[2];
  if (!meterId) {
    process.stderr.write('usage: npm run meter -- <meter id> [--json]\n');
    return 2;
  }
  const v = await openVerifier(loadConfig());
  try {
    const r = await meterHistory({ db: v.db.knex, hsm: v.hsm, meterId });
    if (process.argv.includes('--json')) {
      process.stdout.write(JSON.stringify(r, null, 2) + '\n');
      return 0;
    }
    const m = r.meter as { meterId: string; state: string; licence: string; licenceId: string; ascendingRegister: number; descendingRegister: number; recordCounter: number };
    process.stdout.write(`meter ${m.meterId} (${m.state}, licence ${m.licence}${m.licenceId ? ` ${m.licenceId}` : ''})  AR ${millsText(m.ascendingRegister)}  DR ${millsText(m.descendingRegister)}  record counter ${m.recordCounter}\n`);
    for (const h of r.history) {
      process.stdout.write(`${h.at}  ${h.type.padEnd(12)} ${millsText(h.amount).padStart(12)}  AR ${millsText(h.ascendingRegister).padStart(12)}  DR ${millsText(h.descendingRegister).padStart(12)}  module ${h.module}#${h.seq}  ${JSON.stringify(h.details)}\n`);
    }
    return 0;
  } finally {
    await v.close();
  }
}

runMain(main);
