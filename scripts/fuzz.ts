/**
 * npm run fuzz -- [--requests N] [--seed S] [--seconds T] [--modules M] [--quiet]
 *
 * Starts the service as the tests do (fresh SoftHSM2 tokens and embedded PostgreSQL in a temp
 * directory, the dev PKI, the HTTP API on 127.0.0.1), runs the seeded HTTP fuzzer (test/fuzz/,
 * docs/fuzz.md) against it, prints the requests by route and by status and every finding, and
 * exits 1 if there is any finding. The same seed sends the same sequence of mutations.
 */
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
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
import { runMain } from '../src/ops/run-main';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v < 0) {
    process.stderr.write(`--${name} needs a non-negative number\n`);
    process.exit(2);
  }
  return v;
}

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

  // What test/setup.ts does for the test suite: a token directory and a database of our own.
  const root = mkdtempSync(join(tmpdir(), 'vbi-fuzz-'));
  mkdirSync(join(root, 'tokens'));
  const conf = join(root, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${join(root, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  process.env.SOFTHSM2_CONF = conf;
  process.env.VBI_TEST_ROOT = root;
  if (!process.env.PKCS11_LIBRARY) {
    const dev = readFileSync(join(__dirname, '..', '..', 'var', 'dev.env'), 'utf8');
    const m = /^PKCS11_LIBRARY=(.*)$/m.exec(dev);
    if (!m) throw new Error('run scripts/bootstrap.sh first (npm start or npm test does)');
    process.env.PKCS11_LIBRARY = m[1];
  }

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

runMain(main, 2);
