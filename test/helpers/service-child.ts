/**
 * Run as a separate process by the lease test: starts a service on the given database and
 * tokens, as a second `npm start` on the same deployment would, and prints what happened.
 */
import { openDatabase } from '@vbi/server/db/database';
import { createService } from '@vbi/server/service';
import { isVbiError } from '@vbi/core/errors';
import { testConfig } from './ledger';

async function main(): Promise<void> {
  const [url, ...labels] = process.argv.slice(2);
  const db = await openDatabase({ url, varDir: process.env.VBI_TEST_ROOT as string });
  try {
    const service = await createService({ config: testConfig(labels), db });
    process.stdout.write('STARTED\n');
    await service.close();
  } catch (e) {
    process.stdout.write(isVbiError(e) ? `${e.code}\n` : `ERROR ${String(e)}\n`);
  } finally {
    await db.close();
  }
}

main().catch((e) => {
  process.stderr.write(String(e?.stack ?? e));
  process.exit(1);
});
