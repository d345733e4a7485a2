import { expect } from 'chai';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, ServiceProcess } from '@vbi/server/ops/service-process';
import { VbiClient } from '@vbi/client/client/vbi-client';
import { Database, openDatabase } from '@vbi/server/db/database';
import { shardOfMeter, shardSchema } from '@vbi/server/config/shard';
import { conservation } from '@vbi/server/ledger/conservation';
import { DEV_SO_PIN, DEV_USER_PIN, devTokenLabel } from '@vbi/server/config/config';
import type { WorkerInfo } from '@vbi/server/ops/front';

const SHARDS = 3;
const secondToken = (shard: number) => `${devTokenLabel(shard)}-b`;

/**
 * `npm start -- --workers 3` as an operator runs it (docs/operations.md, "Several processes,
 * several tokens"): three service processes, each serving its shard with two module tokens that
 * share the shard's package keys, behind the front, over one embedded PostgreSQL. 21 mailers
 * print through the front; one worker is killed (SIGKILL) while they do. The front starts a new
 * process for its shard, which takes the shard over; no mailer is stuck, every indicium a mailer
 * received is in its shard once, each meter's registers are what its indicia add up to, and
 * conservation holds in every shard. A process started on a token another process holds stops
 * with MODULE_IN_USE.
 */
describe('several processes: the front and three workers, one of them killed', function () {
  this.timeout(900_000);
  let dir: string;
  let svc: ServiceProcess;
  let dbs: Database[] = [];
  const clients: VbiClient[] = [];

  before(async () => {
    const root = process.env.VBI_TEST_ROOT as string;
    chmodSync(root, statSync(root).mode | 0o001); // the embedded server runs as 'postgres', which must reach var/pgdata
    dir = mkdtempSync(join(root, 'workers-'));
    svc = await ServiceProcess.create(dir);
    svc.args = ['--workers', String(SHARDS)];
    // the first start provisions each shard's dev module token (and the dev CA); a key ceremony
    // then gives each shard a second module with the shard's package keys
    await svc.start(300_000);
    await svc.terminate(30_000);
    const pins = { VBI_SO_PIN: DEV_SO_PIN, PKCS11_USER_PIN: DEV_USER_PIN };
    for (let shard = 0; shard < SHARDS; shard++) {
      const label = secondToken(shard);
      for (const args of [['init-token', '--label', label], ['generate', '--label', label, '--own-keys']]) {
        const r = await svc.runCeremony([...args, '--officer', 'Sam SO'], pins);
        expect(r.code, r.stdout + r.stderr).to.equal(0);
      }
      const r = await svc.runCeremony(['clone', '--from', devTokenLabel(shard), '--to', label, '--officer', 'Sam SO'], { VBI_SO_PIN_FROM: DEV_SO_PIN, PKCS11_USER_PIN_FROM: DEV_USER_PIN, VBI_SO_PIN_TO: DEV_SO_PIN, PKCS11_USER_PIN_TO: DEV_USER_PIN });
      expect(r.code, r.stdout + r.stderr).to.equal(0);
    }
    svc.env = {
      PKCS11_USER_PIN: DEV_USER_PIN, VBI_METER_POOL: '8',
      VBI_SHARD_TOKENS: Array.from({ length: SHARDS }, (_, s) => `${s}=${devTokenLabel(s)},${secondToken(s)}`).join(';'),
    };
    await svc.start(300_000);
    for (let s = 0; s < SHARDS; s++) dbs.push(await openDatabase({ varDir: svc.varDir, schema: shardSchema(s), poolSize: 2 }));
  });
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await svc?.terminate(30_000);
    for (const db of dbs) await db.close().catch(() => undefined);
    dbs = [];
    await svc?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const workers = (): WorkerInfo[] => JSON.parse(readFileSync(join(svc.varDir, 'workers.json'), 'utf8')) as WorkerInfo[];

  it('21 mailers print through the front; the worker of shard 1 killed: a new process takes its shard over, nothing is stuck, lost or spent twice', async () => {
    // each worker serves its shard with both of its tokens
    for (const w of workers()) {
      const health = await (await fetch(`${w.url}/v1/health`)).json() as { modules: Array<{ inRotation: boolean }> };
      expect(health.modules.map((m) => m.inRotation), `shard ${w.shard}`).to.deep.equal([true, true]);
    }
    // registrations go to the workers in turn: each shard gets mailers
    for (let i = 0; i < 21; i++) {
      clients.push(await VbiClient.register({
        baseUrl: svc.url, rootCertPem: svc.rootPem, name: `Worker mailer ${i}`, licensingZip: '20260', returnAddress: ['Mailer', '1 Main St'],
        password: 'workers password', keyFilePath: join(dir, `key-${i}.json`), http: { attempts: 1 },
      }));
    }
    expect(new Set(clients.map((c) => shardOfMeter(c.meterId)))).to.deep.equal(new Set([0, 1, 2]));
    for (const c of clients) {
      await c.buy({ amount: 200_000, payment: { kind: 'card', token: 'tok_approve' } });
      await c.openSession({ heartbeats: false });
    }
    const received: Array<{ meterId: string; sequence: number; postage: number; at: number }> = [];
    const codes = new Map<string, number>();
    let stop = false;
    const loops = clients.map(async (c) => {
      while (!stop) {
        try {
          const out = await c.print([{ destinationZip: '10001', postage: 100 }, { destinationZip: '10002', postage: 150 }]);
          for (const item of out.items) {
            if (item.status === 'printed' && item.receipt && item.decoded) received.push({ meterId: c.meterId, sequence: item.decoded.fields.sequence, postage: item.receipt.amount, at: Date.now() });
          }
        } catch (e) {
          const code = (e as { code?: string }).code ?? 'ERROR';
          codes.set(code, (codes.get(code) ?? 0) + 1);
          await c.recover().catch(() => undefined);
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    });
    let restartedAt = 0;
    try {
      await new Promise((r) => setTimeout(r, 3_000));
      const victim = workers().find((w) => w.shard === 1)!;
      expect(victim.up).to.equal(true);
      process.kill(victim.pid!, 'SIGKILL');
      for (const deadline = Date.now() + 120_000; Date.now() < deadline;) {
        const w = workers().find((x) => x.shard === 1)!;
        if (w.up && w.restarts === 1 && w.pid !== victim.pid) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      expect(workers().find((x) => x.shard === 1)).to.include({ up: true, restarts: 1 });
      restartedAt = Date.now();
      // every shard-1 mailer prints again through the new process
      const shard1 = clients.filter((c) => shardOfMeter(c.meterId) === 1).map((c) => c.meterId);
      for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
        if (shard1.every((m) => received.some((x) => x.meterId === m && x.at > restartedAt))) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      expect(shard1.filter((m) => !received.some((x) => x.meterId === m && x.at > restartedAt)), JSON.stringify([...codes])).to.deep.equal([]);
    } finally {
      stop = true;
      await Promise.all(loops);
    }
    // shard 1's mailers were refused while its process was down, and retried
    expect(codes.get('SHARD_UNAVAILABLE') ?? 0, JSON.stringify([...codes])).to.be.greaterThan(0);
    // the other shards did not stop: their mailers printed while shard 1 was down
    expect(received.filter((x) => shardOfMeter(x.meterId) !== 1 && x.at < restartedAt).length).to.be.greaterThan(0);

    // every indicium a mailer received is in its shard's schema, once, with its postage
    for (const c of clients) await c.recover();
    for (let s = 0; s < SHARDS; s++) {
      const rows = await dbs[s].knex('indicia').select('meter_id', 'sequence', 'postage');
      const have = new Map<string, number>();
      for (const r of rows) have.set(`${r.meter_id}#${r.sequence}`, (have.has(`${r.meter_id}#${r.sequence}`) ? -1 : Number(r.postage)));
      const mine = received.filter((x) => shardOfMeter(x.meterId) === s);
      expect(mine.filter((x) => have.get(`${x.meterId}#${x.sequence}`) !== x.postage), `shard ${s}`).to.deep.equal([]);
      expect((await conservation(dbs[s].knex)).violations, `shard ${s}`).to.deep.equal([]);
    }
    // no double spend: each meter's registers are what its indicia add up to, and its balance says so
    for (const c of clients) {
      const db = dbs[shardOfMeter(c.meterId)];
      const spent = Number((await db.knex('indicia').where({ meter_id: c.meterId }).sum({ s: 'postage' }).first())!.s ?? 0);
      const row = await db.knex('meters').where({ meter_id: c.meterId }).first('ascending_register', 'descending_register');
      expect([Number(row.ascending_register), Number(row.descending_register)], c.meterId).to.deep.equal([spent, 200_000 - spent]);
      expect(await c.balance()).to.deep.include({ ascending: spent, descending: 200_000 - spent });
    }
  });

  it('hostile input at the front: an oversized body is refused there (413), a malformed one reaches a worker that refuses it (400), and nothing is stuck', async () => {
    const post = (body: string) => fetch(`${svc.url}/v1/balance`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const big = await post(' '.repeat((16 << 20) + 1));
    expect([big.status, ((await big.json()) as { error: { code: string } }).error.code]).to.deep.equal([413, 'BODY_TOO_LARGE']);
    const bad = await post('{"meterId": "VBI1-');
    expect(bad.status).to.equal(400);
    const empty = await post('');
    expect(empty.status).to.be.within(400, 499);
    // the front and the workers serve on
    expect(workers().every((w) => w.up)).to.equal(true);
    expect((await fetch(`${svc.url}/v1/health`)).status).to.equal(200);
  });

  it('a process started on a token another process holds stops with MODULE_IN_USE', async () => {
    const r = await svc.runMain([], {
      VBI_SHARD: '4', PKCS11_TOKEN_LABELS: secondToken(1), PKCS11_USER_PIN: DEV_USER_PIN, DATABASE_URL: dbs[0].url, PORT: String(await freePort()),
    });
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/^MODULE_IN_USE: /m);
  });
});
