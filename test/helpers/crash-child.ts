/**
 * Run as a separate process by the crash tests: one CreateIndicium on the given meter, with the
 * process killed (SIGKILL) either after the module's prepare and the database writes, before
 * COMMIT (`before`), or right after COMMIT, before the ring append (`after`).
 */
import { openDatabase } from '@vbi/server/db/database';
import { createIndicium } from './ledger-commands';
import { createService } from '@vbi/server/service';
import { MAIL, testConfig } from './ledger';

async function main(): Promise<void> {
  const [mode, url, meterId, ...labels] = process.argv.slice(2);
  const kill = () => { process.kill(process.pid, 'SIGKILL'); };
  const db = await openDatabase({ url, varDir: process.env.VBI_TEST_ROOT as string });
  const service = await createService({
    config: testConfig(labels), db,
    ledger: { faults: mode === 'after' ? { afterCommit: kill } : { beforeCommit: kill } },
  });
  await createIndicium(service.ledger, { meterId, postage: 4_000, mailpiece: MAIL });
  process.stdout.write('RELEASED (the kill did not happen)\n');
}

main().catch((e) => {
  process.stderr.write(String(e?.stack ?? e));
  process.exit(1);
});
