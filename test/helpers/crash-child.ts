/**
 * Run as a separate process by the crash test: one CreateIndicium on the given meter, with the
 * process killed (SIGKILL) after the module dispatch and the database writes, before COMMIT.
 */
import { openDatabase } from '../../src/db/database';
import { createService } from '../../src/service';
import { MAIL, testConfig } from './ledger';

async function main(): Promise<void> {
  const [url, meterId, ...labels] = process.argv.slice(2);
  const db = await openDatabase({ url, varDir: process.env.VBI_TEST_ROOT as string });
  const service = await createService({
    config: testConfig(labels), db,
    ledger: { faults: { beforeCommit: () => { process.kill(process.pid, 'SIGKILL'); } } },
  });
  await service.ledger.createIndicium({ meterId, postage: 4_000, mailpiece: MAIL });
  process.stdout.write('COMMITTED (the kill did not happen)\n');
}

main().catch((e) => {
  process.stderr.write(String(e?.stack ?? e));
  process.exit(1);
});
