/**
 * npm run bench -- http [--seconds N] [--mailers 1,4,16,64] [--batches 1,50] [--modules 1,2] [--meters N] [--profile DIR]
 * npm run bench -- http --processes 1,2,3 [--seconds N] [--mailers ...] [--batches ...]
 *
 * Durable printing through the path mailers take: the real service program (`packages/server/dist/src/bin/main.js`,
 * what `npm start` runs) in a temp directory of its own — SoftHSM2 dev token, embedded
 * PostgreSQL with fsync on, dev PKI — and mailers registered and printing through the SDK over
 * HTTP. For each number of modules (the second and later cloned from the dev token, as the
 * ceremony's clone does), number of concurrent mailers K and batch size B it prints items/s
 * (every item committed and checkpointed before its answer), p50/p99 per request and the errors,
 * the CPU time per item of the service, of PostgreSQL and of the mailers (the SDK runs in the
 * benchmark's own process: on this machine all three share its cores), and per module count the commands per commit group (GET /v1/metrics); then, per batch size,
 * an open-loop row at half of that batch size's best rate: requests due at a steady pace, their
 * p50/p99 counted from when each was due. With --meters N the
 * service is stopped after the last module count's rows, N more meters' leaves are put into its
 * meter map (created by the bench, not through HTTP; the modules accept the map through the
 * officer's reinstatement), and the rows with K ≤ 16 run again. Then the token's raw
 * ECDSA P-256 signature rate measured in the same run on the same token through the module's
 * own calls (one signature per call, and 50 per trip as print requests send them; the best is
 * the base), and the ratio. With
 * --profile the service runs under `node --cpu-prof` and writes its CPU profile (.cpuprofile,
 * for Chrome DevTools) into DIR when the rows are done. With --processes, the rows run instead
 * against `npm start -- --workers P` for each P (packages/server/src/ops/front.ts: P service processes, one shard
 * and one dev module token each, behind the front), the mailers registered through the front and
 * so spread over the shards; the service's CPU is the front's and the workers'. Not a test:
 * numbers depend on the machine. Quote the output, don't assert on it.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { VbiClient } from '@vbi/client/client/vbi-client';
import { CryptoModule } from '@vbi/server/hsm/crypto-module';
import { closeLibrary, openLibrary } from '@vbi/server/hsm/pkcs11-library';
import { listTokens } from '@vbi/server/hsm/probe-ceremony';
import { DEV_SO_PIN, DEV_TOKEN_LABEL, DEV_USER_PIN, loadConfig } from '@vbi/server/config/config';
import { installApprovers } from '@vbi/server/hsm/officer-keys';
import { createOfficerKey, signApproval } from '@vbi/server/ceremony/officers';
import type { Approval, ReinstatementStatement } from '@vbi/server/ledger/officer-approval';
import { reinstatementStatement } from '@vbi/server/ledger/reinstatement';
import { createHash } from 'node:crypto';
import { openDatabase } from '@vbi/server/db/database';
import { createService } from '@vbi/server/service';
import { MAP_SHARD } from '@vbi/server/ledger/pg-meter-map';
import { buildMap, leafHash } from '@vbi/server/module/meter-map';
import { MASTER_PSD_ID, MASTER_PSD_SLOT } from '@vbi/server/module/commands/master-psd';
import { digestOf } from '@vbi/server/module/checkpoint';
import { cloneSharedKeys, generateModuleKeys, initToken } from '@vbi/server/hsm/key-ceremony';
import { ServiceProcess } from '@vbi/server/ops/service-process';
import { shardOfMeter } from '@vbi/server/config/shard';
import { cpuSeconds, ownCpuSeconds } from './cpu-time';

function list(name: string, dflt: number[]): number[] {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1].split(',').map(Number) : dflt;
}

function num(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
}

/** The service's commit-group counters (GET /v1/metrics). */
async function groupCounts(url: string): Promise<{ groups: number; commands: number }> {
  const text = await (await fetch(`${url}/v1/metrics`)).text();
  const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  return { groups: value('vbi_commit_groups'), commands: value('vbi_committed_commands') };
}

function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN;
}

/** A second (third ...) module token in the service's token directory, as `ceremony clone` makes one from the dev token. */
async function addModuleToken(dir: string, library: string, label: string): Promise<void> {
  const lib = openLibrary(library, join(dir, 'softhsm2.conf'));
  try {
    const officer = { soPin: DEV_SO_PIN, userPin: DEV_USER_PIN };
    await initToken({ library: lib, label, ...officer });
    await cloneSharedKeys({ suite: 'aes', from: { library: lib, label: DEV_TOKEN_LABEL, ...officer }, to: { library: lib, label, ...officer } });
    await generateModuleKeys({ library: lib, label, ...officer, suite: 'aes', roles: ['module-identity', 'module-transport'] });
  } finally {
    await closeLibrary(lib);
  }
}

/**
 * Puts `n` more meters' leaves (filler leaves after the map's next free slot) into the stopped
 * service's meter map, with every meter it has, as a deployment with that many meters has them;
 * then each module accepts the new map through the officer's reinstatement (packages/server/src/ledger/reinstatement.ts).
 */
async function fillMeterMap(service: ServiceProcess, n: number, library: string, labels: string[]): Promise<void> {
  const env = {
    VBI_VAR_DIR: service.varDir, SOFTHSM2_CONF: join(service.dir, 'softhsm2.conf'), PKCS11_LIBRARY: library,
    PKCS11_TOKEN_LABELS: labels.join(','), PKCS11_USER_PIN: DEV_USER_PIN,
  };
  const db = await openDatabase({ varDir: service.varDir });
  try {
    const map = await db.knex('meter_map').where({ shard: MAP_SHARD }).first('next_slot');
    const leaves = new Map<number, Buffer>();
    for (const m of await db.knex('meters').whereNotNull('slot').select('slot', 'meter_id', 'package')) {
      if (m.package) leaves.set(Number(m.slot), leafHash(Number(m.slot), m.meter_id, digestOf(m.package)));
    }
    // and the vendor's master PSD at its reserved slot, once sealed (docs/ledger.md, "The master PSD")
    const pool = await db.knex('pool').where({ pool_id: 1 }).first('package');
    if (pool?.package) leaves.set(MASTER_PSD_SLOT, leafHash(MASTER_PSD_SLOT, MASTER_PSD_ID, digestOf(pool.package)));
    const first = Number(map.next_slot);
    for (let slot = first; slot < first + n; slot++) leaves.set(slot, createHash('sha256').update(`bench filler ${slot}`).digest());
    const built = buildMap(leaves);
    await db.knex.transaction(async (trx) => {
      await trx('meter_map_nodes').where({ shard: MAP_SHARD }).del();
      for (let i = 0; i < built.nodes.length; i += 5000) {
        await trx('meter_map_nodes').insert(built.nodes.slice(i, i + 5000).map((x) => ({ shard: MAP_SHARD, level: x.level, idx: x.index, hash: x.hash })));
      }
      await trx('meter_map').where({ shard: MAP_SHARD }).update({ root: built.root, next_slot: first + n });
    });
    await db.knex.raw('ANALYZE meter_map_nodes');
    // one bench officer, with an approval key in a token of its own, installed in every module token
    const lib = openLibrary(library, join(service.dir, 'softhsm2.conf'));
    let approve: (statement: ReinstatementStatement) => Promise<Approval>;
    try {
      const officerToken = 'bench-officer';
      if (!listTokens(lib).some((t) => t.label === officerToken)) {
        await initToken({ library: lib, label: officerToken, soPin: DEV_SO_PIN, userPin: DEV_USER_PIN });
        const spki = await createOfficerKey({ library: lib, label: officerToken, soPin: DEV_SO_PIN, userPin: DEV_USER_PIN });
        for (const label of labels) await installApprovers({ library: lib, label, soPin: DEV_SO_PIN, threshold: 1, officers: [{ name: 'bench', spki }] });
      }
      approve = (statement) => signApproval({ library: lib, label: officerToken, userPin: DEV_USER_PIN, officer: 'bench', statement });
      const officer = await createService({ config: loadConfig(env), db });
      try {
        for (const e of officer.engines) {
          const row = await db.knex('modules').where({ module_serial: e.hsm.serial }).first('checkpoint');
          const accept: Buffer | null = row?.checkpoint ?? null;
          await officer.ledger.reinstate({ moduleSerial: e.hsm.serial, officer: 'bench', acceptCheckpoint: accept, approvals: [await approve(reinstatementStatement(e, accept))] });
        }
      } finally {
        await officer.close();
      }
    } finally {
      await closeLibrary(lib);
    }
  } finally {
    await db.close();
  }
}

export async function benchHttp(): Promise<void> {
  const seconds = num('seconds', 5);
  const mailerCounts = list('mailers', [1, 4, 16, 64]);
  const batches = list('batches', [1, 50]);
  const moduleCounts = list('modules', [1, 2]);
  const fill = num('meters', 0);
  const processCounts = process.argv.includes('--processes') ? list('processes', [1, 2, 3]) : [];
  const dir = mkdtempSync(join(tmpdir(), 'vbi-bench-http-'));
  const service = await ServiceProcess.create(dir);
  const say = (s: string) => process.stdout.write(`${s}\n`);
  const devEnv = readFileSync(join(__dirname, '..', '..', 'var', 'dev.env'), 'utf8');
  const library = process.env.PKCS11_LIBRARY ?? /^PKCS11_LIBRARY=(.*)$/m.exec(devEnv)?.[1] as string;
  // the bench registers every mailer from one address: lift the per-client registration limit
  service.env = { VBI_AUTH_RATE_LIMIT: '100000', VBI_METER_POOL: '8' };
  /** The largest K of mailers registered, funded and in session through the SDK at `url`. */
  const mailers = async (tag: string, url: string): Promise<VbiClient[]> => {
    const clients: VbiClient[] = [];
    for (let i = 0; i < Math.max(...mailerCounts); i++) {
      const c = await VbiClient.register({
        baseUrl: url, rootCertPem: service.rootPem, name: `Bench ${i}`, licensingZip: '20260', returnAddress: ['Bench', '1 Main St'],
        password: 'bench http password', keyFilePath: join(dir, `mailer-${tag}-${i}.key`),
      });
      await c.refreshModules();
      await c.buy({ amount: 20_000_000, payment: { kind: 'card', token: 'tok_approve' } });
      await c.openSession();
      clients.push(c);
    }
    return clients;
  };
  const profileDir = process.argv.includes('--profile') ? process.argv[process.argv.indexOf('--profile') + 1] : undefined;
  if (profileDir) service.nodeArgs = ['--cpu-prof', `--cpu-prof-dir=${profileDir}`];
  try {
    let best = 0;
    let bestRow = '';
    // with --processes: the front and its workers (their pids in var/workers.json)
    const servicePids = (): number[] => {
      if (!service.args.length) return service.pid ? [service.pid] : [];
      const workers = JSON.parse(readFileSync(join(service.varDir, 'workers.json'), 'utf8')) as Array<{ pid: number | null }>;
      return [service.pid ?? 0, ...workers.map((w) => w.pid ?? 0)].filter((x) => x > 0);
    };
    const cpuNow = () => ({ service: servicePids().reduce((sum, pid) => sum + cpuSeconds(pid), 0), database: cpuSeconds(service.postmasterPid(), true), mailers: ownCpuSeconds() });
    /** Where the CPU went per printed item, and what rate the machine's cores allow at that cost. */
    const cpuPerItem = (a: ReturnType<typeof cpuNow>, b: ReturnType<typeof cpuNow>, items: number): string => {
      const ms = (k: keyof typeof a) => ((b[k] - a[k]) * 1000) / items;
      const all = ms('service') + ms('database') + ms('mailers');
      const cores = availableParallelism();
      return `    CPU per item: service ${ms('service').toFixed(2)} ms, PostgreSQL ${ms('database').toFixed(2)} ms, mailers (the benchmark's process) ${ms('mailers').toFixed(2)} ms; ${all.toFixed(2)} ms in all, so ${cores} cores allow ${((cores * 1000) / all).toFixed(0)} items/s at this cost`;
    };
    /** One row: `clients` print batches of `b` items for the row's time; items/s, p50/p99, errors. */
    const row = async (label: string, clients: VbiClient[], b: number): Promise<number> => {
      const lat: number[] = [];
      const errors = new Map<string, number>();
      let items = 0;
      const cpu0 = cpuNow();
      const end = performance.now() + seconds * 1000;
      const start = performance.now();
      await Promise.all(clients.map(async (c) => {
        while (performance.now() < end) {
          const t = performance.now();
          try {
            const out = await c.print(Array.from({ length: b }, () => ({ destinationZip: '205000001', postage: 680 })));
            items += out.printed;
            lat.push(performance.now() - t);
            if (out.printed !== b) errors.set('NOT_PRINTED', (errors.get('NOT_PRINTED') ?? 0) + b - out.printed);
          } catch (e) {
            const code = (e as { code?: string }).code ?? 'ERROR';
            errors.set(code, (errors.get(code) ?? 0) + 1);
          }
        }
      }));
      const elapsed = (performance.now() - start) / 1000;
      lat.sort((x, y) => x - y);
      const rate = items / elapsed;
      if (rate > best) {
        best = rate;
        bestRow = label;
      }
      const errs = errors.size ? [...errors].map(([code, n]) => `${code} ${n}`).join(', ') : 'none';
      say(`${label}: ${rate.toFixed(1).padStart(7)} items/s  p50 ${percentile(lat, 50).toFixed(1)} ms  p99 ${percentile(lat, 99).toFixed(1)} ms per request  (${lat.length} requests, errors: ${errs})`);
      if (items > 0) say(cpuPerItem(cpu0, cpuNow(), items));
      return rate;
    };
    /**
     * Open loop at a fixed offered rate (items/s): a request of `b` items is due every b/rate
     * seconds and goes to the next mailer that is free (a mailer sends one request at a time);
     * its latency counts from when it was due, so waiting for a free mailer counts too.
     */
    const openLoop = async (label: string, clients: VbiClient[], b: number, rate: number): Promise<void> => {
      const lat: number[] = [];
      const errors = new Map<string, number>();
      let items = 0;
      const idle = [...clients];
      const waiting: Array<(c: VbiClient) => void> = [];
      const take = () => (idle.length ? Promise.resolve(idle.pop()!) : new Promise<VbiClient>((r) => waiting.push(r)));
      const give = (c: VbiClient) => {
        const w = waiting.shift();
        if (w) w(c);
        else idle.push(c);
      };
      const interval = (b / rate) * 1000;
      const start = performance.now();
      const runs: Array<Promise<void>> = [];
      for (let i = 0; start + i * interval < start + seconds * 1000; i++) {
        const due = start + i * interval;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        runs.push((async () => {
          const c = await take();
          try {
            const out = await c.print(Array.from({ length: b }, () => ({ destinationZip: '205000001', postage: 680 })));
            items += out.printed;
            lat.push(performance.now() - due);
          } catch (e) {
            const code = (e as { code?: string }).code ?? 'ERROR';
            errors.set(code, (errors.get(code) ?? 0) + 1);
          } finally {
            give(c);
          }
        })());
      }
      await Promise.all(runs);
      const elapsed = (performance.now() - start) / 1000;
      lat.sort((x, y) => x - y);
      const errs = errors.size ? [...errors].map(([code, n]) => `${code} ${n}`).join(', ') : 'none';
      say(`${label}: offered ${rate.toFixed(1)} items/s, done ${(items / elapsed).toFixed(1)} items/s  p50 ${percentile(lat, 50).toFixed(1)} ms  p99 ${percentile(lat, 99).toFixed(1)} ms per request from when it was due  (${lat.length} requests, errors: ${errs})`);
    };
    const labels = [DEV_TOKEN_LABEL];
    await service.start(); // the first start provisions the dev token
    if (processCounts.length > 0) {
      say(`machine: ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}; service: packages/server/dist/src/bin/main.js --workers P (one dev module token per worker), SoftHSM2, embedded PostgreSQL (fsync on); ${seconds} s per row`);
      for (const procs of processCounts) {
        // the front and `procs` workers (one shard and one dev module token each) on the same database
        await service.terminate(30_000);
        service.args = ['--workers', String(procs)];
        await service.start(300_000);
        const clients = await mailers(`p${procs}`, service.url);
        const shards = new Map<number, number>();
        for (const c of clients) shards.set(shardOfMeter(c.meterId), (shards.get(shardOfMeter(c.meterId)) ?? 0) + 1);
        say(`${procs} process(es): ${clients.length} mailers registered through the front (by shard: ${[...shards].sort().map(([sh, n]) => `${sh}: ${n}`).join(', ')})`);
        const peak = new Map<number, number>();
        for (const k of mailerCounts) {
          for (const b of batches) {
            peak.set(b, Math.max(peak.get(b) ?? 0, await row(`${procs} process(es), K=${String(k).padStart(2)} mailers, batch ${String(b).padStart(2)}`, clients.slice(0, k), b)));
          }
        }
        for (const b of batches) await openLoop(`${procs} process(es), half load, batch ${String(b).padStart(2)}`, clients, b, (peak.get(b) ?? 0) / 2);
        for (const c of clients) await c.closeSession().catch(() => undefined);
      }
      await service.terminate(30_000);
      service.args = [];
    }
    for (const modules of processCounts.length > 0 ? [] : moduleCounts) {
      if (modules > labels.length) {
        // the service stops, module tokens are cloned from the dev token, the service starts with all of them
        await service.kill();
        while (labels.length < modules) {
          const label = `vbi-bench-module-${labels.length + 1}`;
          await addModuleToken(dir, library, label);
          labels.push(label);
        }
        service.env = { ...service.env, PKCS11_TOKEN_LABELS: labels.join(','), PKCS11_USER_PIN: DEV_USER_PIN };
        await service.start();
      }
      if (best === 0) say(`machine: ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}; service: packages/server/dist/src/bin/main.js, SoftHSM2, embedded PostgreSQL (fsync on); ${seconds} s per row`);
      const t0 = performance.now();
      const clients = await mailers(`m${modules}`, service.url);
      say(`${modules} module(s): ${clients.length} mailers registered, funded and in session through HTTP in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      const before = await groupCounts(service.url);
      const peak = new Map<number, number>();
      for (const k of mailerCounts) {
        for (const b of batches) {
          const rate = await row(`${modules} module(s), K=${String(k).padStart(2)} mailers, batch ${String(b).padStart(2)}`, clients.slice(0, k), b);
          peak.set(b, Math.max(peak.get(b) ?? 0, rate));
        }
      }
      // half of the best rate of each batch size, offered at a steady pace (the issue's latency target)
      for (const b of batches) {
        await openLoop(`${modules} module(s), half load, batch ${String(b).padStart(2)}`, clients, b, (peak.get(b) ?? 0) / 2);
      }
      const after = await groupCounts(service.url);
      const groups = after.groups - before.groups;
      say(`${modules} module(s): ${after.commands - before.commands} commands in ${groups} commit groups (${groups ? ((after.commands - before.commands) / groups).toFixed(1) : '0'} per group)`);
      if (fill > 0 && modules === moduleCounts[moduleCounts.length - 1]) {
        // the same service with `fill` more meters in its meter map: the map is filled with the
        // service stopped and the modules accept it through the officer's reinstatement
        await service.kill();
        const t1 = performance.now();
        await fillMeterMap(service, fill, library, labels);
        say(`${modules} module(s): ${fill} more meters put into the meter map (reinstatement accepted it) in ${((performance.now() - t1) / 1000).toFixed(1)} s`);
        await service.start();
        for (const c of clients) {
          await c.closeSession().catch(() => undefined);
          await c.openSession();
        }
        for (const k of mailerCounts.filter((x) => x <= 16)) {
          for (const b of batches) await row(`${modules} module(s), +${fill} meters, K=${String(k).padStart(2)} mailers, batch ${String(b).padStart(2)}`, clients.slice(0, k), b);
        }
      }
      for (const c of clients) await c.closeSession().catch(() => undefined);
    }
    if (profileDir) {
      await service.terminate();
      say(`service CPU profile written to ${profileDir}`);
    } else await service.kill();

    // the token's raw rate, on the same token, with the service stopped
    const lib = openLibrary(library, join(dir, 'softhsm2.conf'));
    try {
      const m = await CryptoModule.start({
        library: lib, module: { tokenLabel: DEV_TOKEN_LABEL, userPin: DEV_USER_PIN, userType: 1 },
        hsm: { suite: 'aes', wrapMechanism: lib.profile.wrapMechanism, oaepHash: lib.profile.oaepHash, sessionPoolSize: 4 },
      });
      // the token's rate through the module's own calls: one signature per call, and 50 per trip
      // (KeyScope.many, what a print request uses); the best of these is the ratio's base
      let raw = 0;
      for (const [perTrip, inFlight] of [[1, 1], [1, 2], [50, 1], [50, 2], [50, 4]]) {
        let n = 0;
        const end = performance.now() + seconds * 1000;
        const s = performance.now();
        const digest = Buffer.alloc(32, 7);
        await Promise.all(Array.from({ length: inFlight }, async () => {
          while (performance.now() < end) {
            if (perTrip === 1) await m.identitySign(digest);
            else await m.withKeys((k) => k.many(Array.from({ length: perTrip }, () => ({ identitySign: digest }))));
            n += perTrip;
          }
        }));
        const rate = n / ((performance.now() - s) / 1000);
        raw = Math.max(raw, rate);
        say(`raw ECDSA P-256 sign on the same token, ${perTrip} per call, ${inFlight} in flight: ${rate.toFixed(0)}/s`);
      }
      await m.close();
      say(`best durable HTTP rate ${best.toFixed(1)} items/s (${bestRow}) = ${((best / raw) * 100).toFixed(2)}% of the raw signature rate ${raw.toFixed(0)}/s`);
    } finally {
      await closeLibrary(lib);
    }
  } finally {
    await service.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
