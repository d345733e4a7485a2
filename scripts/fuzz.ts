/**
 * npm run fuzz -- [--requests N] [--seed S] [--seconds T] [--modules M] [--quiet]
 *
 * Starts the service as the tests do (fresh SoftHSM2 tokens and embedded PostgreSQL in a temp
 * directory, the dev PKI, the HTTP API on 127.0.0.1), runs the seeded HTTP fuzzer (test/fuzz/,
 * docs/fuzz.md) against it, prints the requests by route and by status and every finding, and
 * exits 1 if there is any finding. The same seed sends the same sequence of mutations.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
// The helpers read the environment only when they start something, so importing them before
// main() sets it (as test/setup.ts does for the suite) is fine.
import { startServiceUnderTest } from '../test/fuzz/service-under-test';
import { runFuzzer } from '../test/fuzz/fuzzer';
import { loadErrorCatalogue } from '../test/fuzz/error-catalogue';
import { formatReport } from '../test/fuzz/report';
import { closeTestPki } from '../test/helpers/pki';
import { closeTestDatabases } from '../test/helpers/db';
import { closeTestLibrary } from '../test/helpers/hsm';
import { runMain } from '@vbi/core/cli/run-main';
import { useTestRoot } from '../test/helpers/test-root';
import { numberArg } from './args';

const arg = (name: string, dflt: number): number => numberArg(name, dflt, { integer: false });

async function main(): Promise<number> {
  if (process.argv.includes('--help')) {
    process.stdout.write('usage: npm run fuzz -- [--requests N] [--seed S] [--seconds T] [--modules M] [--quiet]\n');
    return 0;
  }
  const requests = arg('requests', 1_000);
  const seed = arg('seed', Date.now() % 1_000_000);
  const seconds = arg('seconds', 0) || undefined;
  const modules = arg('modules', 1);
  const quiet = process.argv.includes('--quiet');

  // what test/setup.ts does for the test suite: a token directory and a database of our own
  const root = useTestRoot('vbi-fuzz-');

  process.stdout.write(`fuzz: seed ${seed}, ${requests} requests${seconds ? `, at most ${seconds} s` : ''}, ${modules} module(s)\n`);
  let svc: Awaited<ReturnType<typeof startServiceUnderTest>> | undefined;
  try {
    svc = await startServiceUnderTest({ modules });
    const report = await runFuzzer(svc.target, {
      seed, requests, seconds,
      errorCatalogue: loadErrorCatalogue(join(__dirname, '..', '..', 'docs', 'errors.md')),
      log: quiet ? undefined : (line) => process.stdout.write(`  ${line}\n`),
    });
    process.stdout.write(`${formatReport(report)}\n`);
    return report.findings.length ? 1 : 0;
  } finally {
    await svc?.close().catch(() => undefined);
    await closeTestPki().catch(() => undefined);
    await closeTestDatabases().catch(() => undefined);
    closeTestLibrary();
    rmSync(root, { recursive: true, force: true });
  }
}

runMain(main, { failureCode: 2 });
