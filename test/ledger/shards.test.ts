import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Database, openDatabase } from '@vbi/server/db/database';
import { shardSchema } from '@vbi/server/config/shard';
import { VbiClient } from '@vbi/client/client/vbi-client';
import { conservation } from '@vbi/server/ledger/conservation';
import { verifyJournal } from '@vbi/server/ledger/journal-verify';
import { createService } from '@vbi/server/service';
import { ServerFixture, serverFixture } from '../helpers/server';
import { freshDatabase } from '../helpers/db';
import { testConfig } from '../helpers/ledger';
import { claimMap } from '@vbi/server/ledger/pg-meter-map';
import { ShardOwners } from '@vbi/server/ledger/shard-owners';

/**
 * Two shards in one database (docs/operations.md, "Several processes, several tokens"), each
 * served by its own service with its own module token, as two processes of one deployment would
 * be. Each shard's meters, journal, map and pool are in its own schema; a request that reaches
 * the other process is redirected (307) to its shard's and the SDK follows; conservation and
 * verify-journal hold per shard; a second server for a shard, or one configured with a token
 * another shard uses, stops with MODULE_IN_USE before it touches the token.
 */
describe('shards: two services over one database, each with its own schema and token', function () {
  this.timeout(300_000);
  let dir: string;
  let db0: Database;
  let db1: Database;
  let a: ServerFixture;
  let b: ServerFixture;
  const clients: VbiClient[] = [];

  before(async () => {
    dir = mkdtempSync(join(process.env.VBI_TEST_ROOT as string, 'shards-'));
    db0 = await freshDatabase();
    db1 = await openDatabase({ url: db0.url, varDir: dir, schema: shardSchema(1) });
    a = await serverFixture({ db: db0 });
    b = await serverFixture({ db: db1, shard: 1 });
  });
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await b?.close();
    await a?.close();
    await db1?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const register = async (f: ServerFixture, name: string) => {
    const c = await VbiClient.register({
      baseUrl: f.url, rootCertPem: f.rootPem, name, licensingZip: '20260', returnAddress: [name, '1 Main St'],
      password: 'shard password', keyFilePath: join(dir, `${name}.json`), http: { attempts: 1 },
    });
    clients.push(c);
    return c;
  };

  it("each shard makes its own meters; a mailer of either shard is served through either process, its rows only in its shard's schema", async () => {
    const m0 = await register(a, 'shard-zero');
    const m1 = await register(b, 'shard-one');
    expect(m0.meterId).to.match(/^VBI-/);
    expect(m1.meterId).to.match(/^VBI1-/);
    // the shard-1 mailer goes through shard 0's process from now on
    await m1.close();
    const m1viaA = await VbiClient.open({ keyFilePath: join(dir, 'shard-one.json'), password: 'shard password', baseUrl: a.url, http: { attempts: 1 } });
    clients.push(m1viaA);
    const m0viaB = await VbiClient.open({ keyFilePath: join(dir, 'shard-zero.json'), password: 'shard password', baseUrl: b.url, http: { attempts: 1 } });
    await m0.close();
    clients.push(m0viaB);
    for (const c of [m1viaA, m0viaB]) {
      await c.buy({ amount: 50_000, payment: { kind: 'card', token: 'tok_approve' } });
      await c.openSession({ heartbeats: false });
      const out = await c.print([{ destinationZip: '10001', postage: 100 }, { destinationZip: '10002', postage: 250 }]);
      expect(out.items.map((i) => i.status)).to.deep.equal(['printed', 'printed']);
      expect(await c.balance()).to.deep.include({ ascending: 350, descending: 49_650 });
      await c.closeSession();
    }
    // each meter's rows are in its own shard's schema only
    const where = async (meterId: string) => [
      (await db0.knex('indicia').where({ meter_id: meterId }).count({ n: '*' }).first())!.n,
      (await db1.knex('indicia').where({ meter_id: meterId }).count({ n: '*' }).first())!.n,
    ].map(Number);
    expect(await where(m0.meterId)).to.deep.equal([2, 0]);
    expect(await where(m1.meterId)).to.deep.equal([0, 2]);
    expect(await db0.knex('meters').where({ meter_id: m1.meterId }).first()).to.equal(undefined);
    expect(await db1.knex('meters').where({ meter_id: m0.meterId }).first()).to.equal(undefined);
    // the books of each shard balance on their own sealed packages, and each journal verifies
    for (const [db, f] of [[db0, a], [db1, b]] as const) {
      expect((await conservation(db.knex, { hsm: f.service.engines[0].hsm })).violations).to.deep.equal([]);
      const v = await verifyJournal({ db: db.knex, hsm: f.service.engines[0].hsm });
      expect(v.findings).to.deep.equal([]);
    }
    // each shard has its own pool: the test stock each bought, less its own mailer's download
    expect((await a.service.ledger.pool()).available).to.equal(1_000_000_000 - 50_000);
    expect((await b.service.ledger.pool()).available).to.equal(1_000_000_000 - 50_000);
  });

  it("the redirect: a request naming another shard's meter gets a 307 to that shard's process, with nothing done here; one for a shard nobody serves is SHARD_UNAVAILABLE", async () => {
    const envelope = (meterId: string) => ({
      meterId, op: 'balance', challenge: Buffer.alloc(16).toString('base64'), registers: { ascending: 0, descending: 0 }, body: {}, mac: Buffer.alloc(32).toString('base64'),
    });
    const post = (url: string, body: unknown) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), redirect: 'manual' });
    const moved = await post(`${a.url}/v1/balance?x=1`, envelope('VBI1-0123456789'));
    expect([moved.status, moved.headers.get('location')]).to.deep.equal([307, `${b.url}/v1/balance?x=1`]);
    // a path that names the meter
    const challenge = await post(`${b.url}/v1/registrations/VBI-0123456789/challenge`, {});
    expect([challenge.status, challenge.headers.get('location')]).to.deep.equal([307, `${a.url}/v1/registrations/VBI-0123456789/challenge`]);
    // this shard's meter is served here: the envelope's MAC is checked (and fails)
    const here = await post(`${a.url}/v1/balance`, envelope('VBI-0123456789'));
    expect(here.status).to.not.equal(307);
    const none = await post(`${a.url}/v1/balance`, envelope('VBI7-0123456789'));
    expect([none.status, none.headers.get('retry-after'), ((await none.json()) as { error: { code: string } }).error.code]).to.deep.equal([503, '1', 'SHARD_UNAVAILABLE']);
  });

  it("a second service for a shard, or one given a token of another shard, stops with MODULE_IN_USE", async () => {
    const labelsOf = (f: ServerFixture) => f.service.engines.map((e) => e.hsm.tokenLabel);
    const refused = async (shard: number, labels: string[]) => {
      const db = await openDatabase({ url: db0.url, varDir: dir, schema: shardSchema(shard) });
      try {
        await createService({ config: testConfig(labels, { shard }), db, moduleCheckIntervalMs: 0 });
        return 'started';
      } catch (e) {
        return (e as { code?: string }).code;
      } finally {
        await db.close();
      }
    };
    expect(await refused(1, labelsOf(b))).to.equal('MODULE_IN_USE');
    expect(await refused(2, labelsOf(a))).to.equal('MODULE_IN_USE');
    // both still serve
    for (const f of [a, b]) expect(f.service.status().modules.every((m) => m.inRotation)).to.equal(true);
  });

  it('a shard in a database of its own: its process claims the shared directory (VBI_DIRECTORY_URL), and the others send its mailers there', async () => {
    const other = await freshDatabase();
    const db2 = await openDatabase({ url: other.url, varDir: dir, schema: shardSchema(2) });
    let c: ServerFixture | undefined;
    try {
      c = await serverFixture({ db: db2, shard: 2, directoryUrl: db0.url });
      const m2 = await register(c, 'shard-two');
      expect(m2.meterId).to.match(/^VBI2-/);
      await m2.close();
      const viaA = await VbiClient.open({ keyFilePath: join(dir, 'shard-two.json'), password: 'shard password', baseUrl: a.url, http: { attempts: 1 } });
      clients.push(viaA);
      await viaA.buy({ amount: 10_000, payment: { kind: 'card', token: 'tok_approve' } });
      await viaA.openSession({ heartbeats: false });
      expect((await viaA.print([{ destinationZip: '10001', postage: 120 }])).items.map((i) => i.status)).to.deep.equal(['printed']);
      await viaA.closeSession();
      // its rows are in its own database only
      const count = async (db: Database) => Number((await db.knex('indicia').where({ meter_id: m2.meterId }).count({ n: '*' }).first())!.n);
      expect([await count(db0), await count(db1), await count(db2)]).to.deep.equal([0, 0, 1]);
      expect((await conservation(db2.knex, { hsm: c.service.engines[0].hsm })).violations).to.deep.equal([]);
    } finally {
      await c?.close();
      await db2.close();
    }
  });

  it('a standby for a shard (VBI_STANDBY) waits while the shard is served, then takes it over: a new ownership epoch, its tokens, and it serves', async () => {
    const db3 = await openDatabase({ url: db0.url, varDir: dir, schema: shardSchema(3) });
    const db3b = await openDatabase({ url: db0.url, varDir: dir, schema: shardSchema(3) });
    let owner: ServerFixture | undefined;
    let standby: Awaited<ReturnType<typeof createService>> | undefined;
    try {
      owner = await serverFixture({ db: db3, shard: 3 });
      const m3 = await register(owner, 'shard-three');
      await m3.buy({ amount: 10_000, payment: { kind: 'card', token: 'tok_approve' } });
      const epoch = async () => Number((await db3b.knex('meter_map').first('owner_epoch')).owner_epoch);
      const before = await epoch();
      const labels = owner.service.engines.map((e) => e.hsm.tokenLabel);
      let took = false;
      const waiting = createService({ config: testConfig(labels, { shard: 3, standby: true }), db: db3b, moduleCheckIntervalMs: 0 }).then((sv) => {
        took = true;
        return sv;
      });
      await new Promise((r) => setTimeout(r, 2_500));
      expect(took, 'the standby took the shard while its owner served it').to.equal(false);
      expect(await epoch()).to.equal(before);
      // the owner goes away (its connections end, as when its process dies)
      await m3.close();
      await owner.close();
      owner = undefined;
      standby = await waiting;
      expect(await epoch()).to.equal(before + 1);
      expect(standby.status().modules.map((m) => [m.inRotation, m.state])).to.deep.equal([[true, 'Idle']]);
      // it serves the shard's meter: a download through its ledger, on the owner's books
      await standby.ledger.postageValueDownload({ meterId: m3.meterId, amount: 500 });
      const row = await db3b.knex('meters').where({ meter_id: m3.meterId }).first('descending_register');
      expect(Number(row.descending_register)).to.equal(10_500);
      expect((await conservation(db3b.knex, { hsm: standby.engines[0].hsm })).violations).to.deep.equal([]);
    } finally {
      await standby?.close();
      await owner?.close();
      await db3.close();
      await db3b.close();
    }
  });

  it('a process whose shard another process took over commits nothing more (ownership epoch): SHARD_LOST, then its requests go to the new owner', async () => {
    const c = await VbiClient.open({ keyFilePath: join(dir, 'shard-one.json'), password: 'shard password', baseUrl: b.url, http: { attempts: 1 } });
    clients.push(c);
    await c.openSession({ heartbeats: false });
    expect((await c.print([{ destinationZip: '10001', postage: 100 }])).items[0].status).to.equal('printed');
    const journalRows = async () => Number((await db1.knex('journal').count({ n: '*' }).first())!.n);
    const rows = await journalRows();
    const ring = b.service.engines[0].status().ring.newestSeq;
    // another process takes shard 1 over, as its start does (b still runs: its lease connection
    // could have dropped while it went on): a new ownership epoch, then its URL in the directory
    await claimMap(db1.knex);
    await new ShardOwners(db1.knex).claim(1, 'http://127.0.0.1:9', 'the-new-owner');
    const refused = await c.print([{ destinationZip: '10001', postage: 100 }]).then(() => null, (e: { code?: string }) => e.code);
    expect(refused).to.equal('SHARD_LOST');
    expect(await journalRows()).to.equal(rows);
    expect(b.service.engines[0].status().ring.newestSeq).to.equal(ring);
    expect(b.service.ledger.servingModules()).to.deep.equal([]);
    // from now on its requests for the shard's meters are sent to the new owner
    const moved = await fetch(`${b.url}/v1/balance`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, redirect: 'manual',
      body: JSON.stringify({ meterId: c.meterId, op: 'balance', challenge: Buffer.alloc(16).toString('base64'), registers: { ascending: 0, descending: 0 }, body: {}, mac: Buffer.alloc(32).toString('base64') }),
    });
    expect([moved.status, moved.headers.get('location')]).to.deep.equal([307, 'http://127.0.0.1:9/v1/balance']);
    expect((await conservation(db1.knex, { hsm: b.service.engines[0].hsm })).violations).to.deep.equal([]);
  });
});
