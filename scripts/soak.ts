/**
 * npm run soak -- [--faults N] [--clients C] [--seed S] [--database-every K] [--quiet]
 *
 * The crash loop (test/crash/crash-loop.ts, docs/recovery.md) at length: the real service
 * program in a temp directory of its own (SoftHSM2 tokens, embedded PostgreSQL, dev PKI),
 * C mailers printing, buying, refunding and opening and closing sessions through the SDK, and N
 * SIGKILLs of the service at random moments (every K-th one of its PostgreSQL too), each
 * followed by a restart. Prints faults, prints acknowledged, losses, double spends, locked-out
 * mailers, undelivered indicia and failed restarts; exits 1 unless every count but the first
 * two is 0.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCrashLoop } from '../test/crash/crash-loop';
import { runMain } from '@vbi/core/cli/run-main';
import { numberArg } from './args';

const arg = (name: string, dflt: number): number => numberArg(name, dflt, { integer: true });

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vbi-soak-'));
  const quiet = process.argv.includes('--quiet');
  const began = Date.now();
  try {
    const r = await runCrashLoop({
      dir, faults: arg('faults', 200), clients: arg('clients', 2), seed: arg('seed', 1), databaseEvery: arg('database-every', 5),
      log: quiet ? undefined : (line) => process.stderr.write(`${line}\n`),
    });
    const sorted = [...r.restartMs].sort((a, b) => a - b);
    const q = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;
    const lines = [
      `faults                ${r.faults}`,
      `prints acknowledged   ${r.printsAcknowledged} (${r.itemsPrinted} items)`,
      `losses                ${r.losses}`,
      `double spends         ${r.doubleSpends}`,
      `locked-out mailers    ${r.lockedOut}`,
      `undelivered indicia   ${r.undelivered}`,
      `delivered twice       ${r.deliveredTwice}`,
      `failed restarts       ${r.failedRestarts}`,
      `keys in progress      ${r.keysInProgress}`,
      `modules out           ${r.modulesOut}`,
      `restart ms            p50 ${q(0.5)}  p99 ${q(0.99)}  max ${sorted[sorted.length - 1] ?? 0}`,
      `wall time             ${Math.round((Date.now() - began) / 1000)} s`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    for (const v of r.violations) process.stdout.write(`VIOLATION ${v}\n`);
    const bad = r.losses + r.doubleSpends + r.lockedOut + r.undelivered + r.deliveredTwice + r.failedRestarts + r.keysInProgress + r.modulesOut;
    process.exitCode = bad === 0 ? 0 : 1;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

runMain(main);
