/**
 * npm run bench -- http [--seconds N] [--mailers 1,4,16,64] [--batches 1,50]   (scripts/bench-http.ts)
 * npm run bench -- ledger [--seconds N] [--meters N]
 *
 * Measures, on fresh SoftHSM2 tokens and a fresh embedded PostgreSQL in a temp directory:
 *  - raw token ECDSA P-256 signatures per second (module identity key, 1 and 2 in flight);
 *  - durable CreateIndicium commands per second (committed to PostgreSQL), one meter per
 *    worker, with 1 and 2 modules and 1/8/32 concurrent workers, p50/p99 latency;
 *  - the ratio of the best durable rate to the raw signature rate.
 * Not a test: numbers depend on the machine. Quote the output, don't assert on it.
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { openLibrary, closeLibrary } from '../src/hsm/pkcs11-library';
import { cloneSharedKeys, generateModuleKeys, initToken } from '../src/hsm/key-ceremony';
import { CryptoModule } from '../src/hsm/crypto-module';
import { Config } from '../src/config/config';
import { createService } from '../src/service';
import { startEmbeddedPostgres } from '../src/db/embedded-postgres';
import { Database, openDatabase } from '../src/db/database';
import { createHash } from 'node:crypto';
import { buildMap } from '../src/module/meter-map';
import { Client } from 'pg';
import { startDevPki } from '../src/pki/dev-pki';
import { PgMeterStore } from '../src/ledger/pg-meter-store';
import { benchHttp } from './bench-http';

const SO = 'bench-so-pin';
const USER = 'bench-user-pin';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function timed(seconds: number, inFlight: number, op: () => Promise<unknown>): Promise<{ count: number; rate: number; p50: number; p99: number }> {
  const lat: number[] = [];
  const end = performance.now() + seconds * 1000;
  const worker = async () => {
    while (performance.now() < end) {
      const t = performance.now();
      await op();
      lat.push(performance.now() - t);
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: inFlight }, worker));
  const elapsed = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  return { count: lat.length, rate: lat.length / elapsed, p50: percentile(lat, 50), p99: percentile(lat, 99) };
}

/**
 * Puts `n` other meters' leaves (slots 0..n-1) into a new database's meter map, as a deployment
 * with n meters has them: every non-empty node on their paths, and the map row's root and next
 * free slot. The modules accept that map through the officer's reinstatement.
 */
async function fillMeterMap(db: Database, n: number): Promise<void> {
  const leaves = new Map<number, Buffer>();
  for (let slot = 0; slot < n; slot++) leaves.set(slot, createHash('sha256').update(`bench filler ${slot}`).digest());
  const built = buildMap(leaves);
  for (let i = 0; i < built.nodes.length; i += 5000) {
    await db.knex('meter_map_nodes').insert(built.nodes.slice(i, i + 5000).map((x) => ({ shard: 0, level: x.level, idx: x.index, hash: x.hash })));
  }
  await db.knex('meter_map').where({ shard: 0 }).update({ root: built.root, next_slot: n });
  await db.knex.raw('ANALYZE meter_map_nodes');
}

async function main(): Promise<void> {
  if (process.argv[2] === 'http') {
    await benchHttp();
    return;
  }
  if (process.argv[2] !== 'ledger') {
    process.stderr.write('usage: npm run bench -- http [--seconds N] [--mailers 1,4,16,64] [--batches 1,50]\n       npm run bench -- ledger [--seconds N] [--meters N]\n');
    process.exit(2);
  }
  const seconds = arg('seconds', 5);
  const fill = arg('meters', 0);
  const root = mkdtempSync(join(tmpdir(), 'vbi-bench-'));
  mkdirSync(join(root, 'tokens'));
  writeFileSync(join(root, 'softhsm2.conf'), `directories.tokendir = ${join(root, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  const devEnv = readFileSync(join(__dirname, '..', '..', 'var', 'dev.env'), 'utf8');
  const library = process.env.PKCS11_LIBRARY ?? /^PKCS11_LIBRARY=(.*)$/m.exec(devEnv)?.[1] as string;
  const lib = openLibrary(library, join(root, 'softhsm2.conf'));
  const pg = await startEmbeddedPostgres({ dataDir: join(root, 'pgdata') });
  const pki = await startDevPki({ library: lib, caLabel: 'bench-ca', vendorLabel: 'bench-vendor', soPin: SO, userPin: USER, caDir: join(root, 'ca') });
  try {
    const labels = ['bench-a', 'bench-b'];
    await initToken({ library: lib, label: labels[0], soPin: SO, userPin: USER });
    await generateModuleKeys({ library: lib, label: labels[0], soPin: SO, userPin: USER, suite: 'aes' });
    await initToken({ library: lib, label: labels[1], soPin: SO, userPin: USER });
    await cloneSharedKeys({
      suite: 'aes', oaepHash: lib.profile.oaepHash, wrapMechanism: lib.profile.wrapMechanism,
      from: { library: lib, label: labels[0], soPin: SO, userPin: USER }, to: { library: lib, label: labels[1], soPin: SO, userPin: USER },
    });
    await generateModuleKeys({ library: lib, label: labels[1], soPin: SO, userPin: USER, suite: 'aes', roles: ['module-identity', 'module-transport'] });

    const hsmConfig = (n: number): Config['hsm'] => ({
      library, softhsm2Conf: join(root, 'softhsm2.conf'), profile: lib.profile, suite: 'aes', ringSize: 3,
      wrapMechanism: lib.profile.wrapMechanism, oaepHash: lib.profile.oaepHash,
      sessionPoolSize: 4, modules: labels.slice(0, n).map((tokenLabel) => ({ tokenLabel, userPin: USER, userType: 1 })),
    });

    const out: string[] = [];
    const say = (s: string) => { out.push(s); process.stdout.write(s + '\n'); };
    say(`machine: ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}, ${seconds} s per measurement, meter map holding ${fill} other meters`);

    // raw token signatures
    const m = await CryptoModule.start({ library: lib, module: { tokenLabel: labels[0], userPin: USER, userType: 1 }, hsm: hsmConfig(1) });
    const digest = Buffer.alloc(32, 7);
    let rawBest = 0;
    for (const inFlight of [1, 2]) {
      const r = await timed(seconds, inFlight, () => m.identitySign(digest));
      rawBest = Math.max(rawBest, r.rate);
      say(`raw ECDSA P-256 sign (token), ${inFlight} in flight: ${r.rate.toFixed(0)}/s  p50 ${r.p50.toFixed(3)} ms  p99 ${r.p99.toFixed(3)} ms`);
    }
    await m.close();

    // durable CreateIndicium
    let bestDurable = 0;
    let bestLabel = '';
    for (const modules of [1, 2]) {
      for (const workers of [1, 8, 32]) {
        const admin = new Client({ connectionString: pg.url });
        await admin.connect();
        const dbName = `bench_${modules}_${workers}`;
        await admin.query(`CREATE DATABASE ${dbName}`);
        await admin.end();
        const url = new URL(pg.url);
        url.pathname = `/${dbName}`;
        const db = await openDatabase({ url: url.toString(), varDir: root, poolSize: workers + 4 });
        // Each configuration has a new database: the tokens' rings are ahead of it, so the modules
        // start inhibited and an officer reinstates them (the operator's path), after the map was
        // filled with `--meters` other meters' leaves.
        if (fill > 0) await fillMeterMap(db, fill);
        const svc = await createService({ config: { varDir: root, spoilageLimitBps: 100, hsm: hsmConfig(modules) }, db });
        const metergen = pki.metergen(new PgMeterStore(svc.ledger));
        for (const e of svc.engines) {
          const row = await db.knex('modules').where({ module_serial: e.hsm.serial }).first('checkpoint');
          await svc.ledger.reinstate({ moduleSerial: e.hsm.serial, officer: 'bench', acceptCheckpoint: row?.checkpoint ?? null });
        }
        const accountId = await svc.ledger.createAccount({ name: 'Bench', licensingZip: '20260' });
        await svc.ledger.purchaseFromPost({ amount: 1e12, reference: 'bench' });
        const meters: string[] = [];
        for (let i = 0; i < workers; i++) {
          const meterId = `BENCH-${modules}-${workers}-${i}`;
          await metergen.createMeter({ meterId, maxDescendingRegister: 1e11 });
          await svc.ledger.assignMeter({ accountId, meterId });
          await svc.ledger.postageValueDownload({ meterId, amount: 1e10 });
          meters.push(meterId);
        }
        const lat: number[] = [];
        const end = performance.now() + seconds * 1000;
        const t0 = performance.now();
        await Promise.all(meters.map(async (meterId) => {
          while (performance.now() < end) {
            const t = performance.now();
            await svc.ledger.createIndicium({ meterId, postage: 680, mailpiece: { destinationZip: '205000001', rateCategory: 'FCL', rateTableId: 1, rateTableVersion: 1 } });
            lat.push(performance.now() - t);
          }
        }));
        const elapsed = (performance.now() - t0) / 1000;
        lat.sort((a, b) => a - b);
        const rate = lat.length / elapsed;
        if (rate > bestDurable) { bestDurable = rate; bestLabel = `${modules} module(s), ${workers} workers`; }
        say(`durable CreateIndicium, ${modules} module(s), ${String(workers).padStart(2)} workers: ${rate.toFixed(0)}/s  p50 ${percentile(lat, 50).toFixed(2)} ms  p99 ${percentile(lat, 99).toFixed(2)} ms  (${lat.length} commits)`);
        await svc.close();
        await db.close();
      }
    }
    say(`best durable rate ${bestDurable.toFixed(0)}/s (${bestLabel}) = ${((bestDurable / rawBest) * 100).toFixed(2)}% of the raw signature rate ${rawBest.toFixed(0)}/s`);
  } finally {
    await pki.close();
    closeLibrary(lib);
    await pg.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});
