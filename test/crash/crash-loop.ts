import { join } from 'node:path';
import { VbiClient } from '@vbi/client/client/vbi-client';
import type { PrintedItem } from '@vbi/client/client/print-results';
import { isVbiError } from '@vbi/core/errors';
import { openDatabase } from '@vbi/server/db/database';
import { conservation } from '@vbi/server/ledger/conservation';
import { assembleIndicium } from '@vbi/core/indicium/layout';
import { Prng } from '../fuzz/prng';
import { ServiceProcess } from '@vbi/server/ops/service-process';

/**
 * The crash loop of the crash-safe service (docs/recovery.md): the real service program runs as
 * a child process; mailers print, buy, refund and open and close sessions through the SDK while
 * the service is SIGKILLed at random moments (every `databaseEvery`-th time its embedded
 * PostgreSQL too) and restarted. Then every client finishes what it had in flight by itself, and
 * the books are checked. Shared by test/ops/crash-loop.test.ts and `npm run soak`.
 */
export interface CrashLoopOptions {
  dir: string;
  faults: number;
  clients?: number;
  seed?: number;
  /** Kill the postmaster too on every n-th fault; 0 never. Default 5. */
  databaseEvery?: number;
  /** On every n-th fault the restart itself is killed half way first; 0 never. Default 7. */
  startupKillEvery?: number;
  /** Every n-th fault is a SIGTERM followed by a SIGKILL half way through the shutdown; 0 never. Default 11. */
  shutdownKillEvery?: number;
  /** Random run time before each kill, ms. Default 150..1500. */
  runMs?: [number, number];
  log?: (line: string) => void;
}

export interface CrashLoopReport {
  faults: number;
  /** Print requests whose answer the client saw (printed items in them). */
  printsAcknowledged: number;
  itemsPrinted: number;
  /** Mills lost: debited without an indicium, bought without a download, or a conservation violation. */
  losses: number;
  /** Indicia or downloads counted twice. */
  doubleSpends: number;
  /** Clients that could not balance, print and close after the loop, without an operator. */
  lockedOut: number;
  /** Committed indicia their client never received. */
  undelivered: number;
  /** Indicia a client received twice. */
  deliveredTwice: number;
  failedRestarts: number;
  /** Idempotency keys still in progress at the end. */
  keysInProgress: number;
  /** Modules not serving at the end (inhibited or out of rotation). */
  modulesOut: number;
  /** Restart times, ms. */
  restartMs: number[];
  violations: string[];
}

const password = 'crash loop password';

interface Mailer {
  client: VbiClient;
  keyFilePath: string;
  delivered: Map<number, Buffer>;
  deliveredTwice: number;
  acknowledged: number;
  items: number;
  /** Items debited whose client check failed. */
  unverified: string[];
}

/** Records the printed items a client received; the same indicium twice is counted. */
function deliver(m: Mailer, items: PrintedItem[]): void {
  for (const i of items) {
    if (i.status === 'unverified') m.unverified.push(`indicium ${i.indiciumId}: ${i.reason ?? ''} ${i.error?.message ?? ''}`);
    if (i.status !== 'printed' || i.indiciumId === undefined || !i.indicium) continue;
    if (m.delivered.has(i.indiciumId)) m.deliveredTwice++;
    else m.delivered.set(i.indiciumId, i.indicium);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runCrashLoop(opts: CrashLoopOptions): Promise<CrashLoopReport> {
  const log = opts.log ?? (() => undefined);
  const rng = new Prng(opts.seed ?? 1);
  const [lo, hi] = opts.runMs ?? [150, 1500];
  const databaseEvery = opts.databaseEvery ?? 5;
  const startupKillEvery = opts.startupKillEvery ?? 7;
  const shutdownKillEvery = opts.shutdownKillEvery ?? 11;
  const service = await ServiceProcess.create(opts.dir);
  const report: CrashLoopReport = {
    faults: 0, printsAcknowledged: 0, itemsPrinted: 0, losses: 0, doubleSpends: 0, lockedOut: 0, undelivered: 0, deliveredTwice: 0,
    failedRestarts: 0, keysInProgress: 0, modulesOut: 0, restartMs: [], violations: [],
  };
  try {
    log(`first start: ${await service.start()} ms`);
    const mailers: Mailer[] = [];
    for (let i = 0; i < (opts.clients ?? 2); i++) {
      const keyFilePath = join(opts.dir, `mailer-${i}.key`);
      const m: Mailer = { client: undefined as unknown as VbiClient, keyFilePath, delivered: new Map(), deliveredTwice: 0, acknowledged: 0, items: 0, unverified: [] };
      m.client = await VbiClient.register({
        baseUrl: service.url, rootCertPem: service.rootPem, name: `Crash Loop ${i}`, licensingZip: '20260', returnAddress: ['Crash Loop', '1 Main St'],
        password, keyFilePath, http: { attempts: 2, retryDelayMs: 50, timeoutMs: 30_000 },
        onRecovered: (r) => deliver(m, r.outcome?.items ?? []),
      });
      await m.client.buy({ amount: 200_000, payment: { kind: 'card', token: 'tok_approve' } });
      mailers.push(m);
    }

    let stop = false;
    const loops = mailers.map((m, i) => (async () => {
      const r = new Prng((opts.seed ?? 1) * 100 + i);
      while (!stop) {
        try {
          await step(m, r);
        } catch (e) {
          // the service is down or failed part way: the next call recovers (pending requests, resync)
          if (isVbiError(e) && e.kind === 'user' && !['SESSION_ENDED', 'SESSION_NOT_FOUND'].includes(e.code)) {
            log(`mailer ${i}: ${e.code}: ${e.message}`);
          }
          await sleep(100);
        }
      }
    })());

    for (let fault = 1; fault <= opts.faults; fault++) {
      await sleep(rng.range(lo, hi));
      const inShutdown = shutdownKillEvery > 0 && fault % shutdownKillEvery === 0;
      if (inShutdown) await service.terminateThenKill(rng.range(0, 300));
      else await service.kill();
      const withDatabase = databaseEvery > 0 && fault % databaseEvery === 0 && service.killDatabase();
      report.faults++;
      const halfWay = startupKillEvery > 0 && fault % startupKillEvery === 0;
      if (halfWay) await service.startAndKill(rng.range(100, 1500));
      for (;;) {
        try {
          const ms = await service.start(120_000);
          report.restartMs.push(ms);
          log(`fault ${fault}${withDatabase ? ' (service and PostgreSQL)' : ''}${halfWay ? ' (a restart killed half way first)' : ''}${inShutdown ? ' (killed during its shutdown)' : ''}: restarted in ${ms} ms`);
          break;
        } catch (e) {
          report.failedRestarts++;
          log(`fault ${fault}: restart failed: ${(e as Error).message.slice(0, 2000)}`);
          await service.kill();
          if (report.failedRestarts > 3) throw e;
        }
      }
    }
    stop = true;
    await Promise.all(loops);

    // Every client finishes what it had in flight by itself, then must be able to go on.
    for (const [i, m] of mailers.entries()) {
      try {
        m.client.stopHeartbeats();
        const c = await VbiClient.open({ keyFilePath: m.keyFilePath, password, onRecovered: (r) => deliver(m, r.outcome?.items ?? []) });
        m.client = c;
        await c.openSession({ heartbeats: false }); // finishes pending prints (their indicia in this session)
        for (const r of await c.recover()) deliver(m, r.outcome?.items ?? []);
        await c.balance();
        const out = await c.print([{ destinationZip: '20500', postage: 100 }]);
        if (out.printed !== 1) throw new Error(`final print: ${out.items[0].status} ${out.items[0].reason ?? ''}`);
        deliver(m, out.items);
        m.acknowledged++;
        m.items++;
        await c.closeSession();
        if (c.state.pending?.length) throw new Error(`${c.state.pending.length} requests still pending`);
      } catch (e) {
        report.lockedOut++;
        report.violations.push(`mailer ${i} cannot continue: ${(e as Error).message}`);
      }
    }

    const db = await openDatabase({ varDir: service.varDir, poolSize: 2 });
    try {
      const knex = db.knex;
      for (const [i, m] of mailers.entries()) {
        const meterId = m.client.meterId;
        const rows = await knex('indicia').where({ meter_id: meterId }).select('indicium_id', 'postage', 'data', 'signature');
        const meter = await knex('meters').where({ meter_id: meterId }).first('ascending_register', 'descending_register');
        const printed = rows.reduce((s, r) => s + Number(r.postage), 0);
        // the ascending register is exactly the postage of the meter's indicia
        if (Number(meter.ascending_register) > printed) {
          report.losses += Number(meter.ascending_register) - printed;
          report.violations.push(`meter ${meterId}: AR ${meter.ascending_register} but its indicia total ${printed}`);
        }
        if (Number(meter.ascending_register) < printed) {
          report.doubleSpends++;
          report.violations.push(`meter ${meterId}: indicia total ${printed} above AR ${meter.ascending_register}`);
        }
        for (const r of rows) {
          const got = m.delivered.get(Number(r.indicium_id));
          if (!got) {
            report.undelivered++;
            const b = await knex('indicia as i').leftJoin('print_batches as b', 'b.batch_id', 'i.batch_id').where('i.indicium_id', r.indicium_id)
              .first('i.batch_id', 'i.item_index', 'b.idempotency_key', 'b.items');
            const key = await knex('idempotency_keys').where({ scope: meterId, key: b?.idempotency_key ?? '' }).first('state', 'status');
            report.violations.push(`mailer ${i}: indicium ${r.indicium_id} committed but never delivered (batch ${b?.batch_id} item ${b?.item_index}/${b?.items}, key ${b?.idempotency_key}: ${JSON.stringify(key)})`);
          } else if (!got.equals(assembleIndicium(r.data, r.signature))) {
            report.violations.push(`mailer ${i}: indicium ${r.indicium_id} delivered with other bytes than committed`);
            report.doubleSpends++;
          }
        }
        report.deliveredTwice += m.deliveredTwice;
        for (const u of m.unverified) report.violations.push(`mailer ${i}: unverified ${u}`);
        report.printsAcknowledged += m.acknowledged;
        report.itemsPrinted += m.items;
        // a payment charged and never downloaded nor voided is the mailer's money lost
        const stuck = await knex('payments').where({ meter_id: meterId }).whereIn('status', ['approved', 'pending']).whereNotNull('provider_ref');
        for (const p of stuck) {
          report.losses += Number(p.amount);
          report.violations.push(`payment ${p.payment_id} of meter ${meterId} charged (${p.status}) but not downloaded`);
        }
        const applied: Array<{ n: string; total: string | null }> = await knex('payments').where({ meter_id: meterId, status: 'applied' }).select(knex.raw('count(*) AS n, sum(amount) AS total'));
        const pvds: Array<{ n: string; total: string | null }> = await knex('journal').where({ meter_id: meterId, tx_type: 'pvd' }).select(knex.raw('count(*) AS n, sum(amount) AS total'));
        if (Number(applied[0].n) !== Number(pvds[0].n) || Number(applied[0].total ?? 0) !== Number(pvds[0].total ?? 0)) {
          report.doubleSpends++;
          report.violations.push(`meter ${meterId}: ${applied[0].n} applied payments but ${pvds[0].n} downloads`);
        }
      }
      const c = await conservation(knex);
      for (const v of c.violations) {
        report.losses++;
        report.violations.push(`conservation: ${v}`);
      }
      const keys = await knex('idempotency_keys').where({ state: 'in_progress' }).count<{ n: string }[]>({ n: '*' });
      report.keysInProgress = Number(keys[0].n);
      const health = await (await fetch(`${service.url}/v1/health`)).json() as { modules: Array<{ state: string; inRotation: boolean; reason?: string }> };
      for (const mod of health.modules) {
        if (!(mod.inRotation && (mod.state === 'Idle' || mod.state === 'User'))) {
          report.modulesOut++;
          report.violations.push(`module ${mod.state}: ${mod.reason ?? ''}`);
        }
      }
    } finally {
      await db.close();
    }
    return report;
  } finally {
    await service.stop();
  }

  /** One thing a mailer does, chosen at random; errors go to the loop. */
  async function step(m: Mailer, r: Prng): Promise<void> {
    const c = m.client;
    if (c.registers.descending < 20_000) {
      await c.buy({ amount: r.range(20_000, 50_000), payment: { kind: 'card', token: 'tok_approve' } });
      return;
    }
    if (!c.session || c.session.ended) {
      await c.openSession({ heartbeats: false });
      return;
    }
    const what = r.weighted([
      { weight: 50, value: 'print' }, { weight: 10, value: 'buy' }, { weight: 10, value: 'refund' }, { weight: 10, value: 'close' },
      { weight: 10, value: 'balance' }, { weight: 10, value: 'heartbeat' },
    ]);
    switch (what) {
      case 'print': {
        const out = await c.print(Array.from({ length: r.range(1, 3) }, () => ({ destinationZip: '10001', postage: r.range(100, 500) })));
        deliver(m, out.items);
        m.acknowledged++;
        m.items += out.printed;
        return;
      }
      case 'buy':
        await c.buy({ amount: r.range(1_000, 5_000), payment: { kind: 'card', token: 'tok_approve' } });
        return;
      case 'refund':
        await c.refund({ kind: 'partial', amount: r.range(1, 20), reason: 'spoiled' }).catch((e) => {
          if (!isVbiError(e, 'SPOILAGE_LIMIT')) throw e; // refused: nothing happened
        });
        return;
      case 'close':
        await c.closeSession();
        return;
      case 'balance':
        await c.balance();
        return;
      default:
        await c.heartbeat();
    }
  }
}
