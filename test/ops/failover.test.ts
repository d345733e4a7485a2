import { expect } from 'chai';
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { EmbeddedPostgres, startEmbeddedPostgres } from '@vbi/server/db/embedded-postgres';
import { Database, openDatabase } from '@vbi/server/db/database';
import { createStandby, promote, requireSynchronousStandby, startStandbyServer, synchronousStandbys } from '@vbi/server/db/standby';
import { VbiClient } from '@vbi/client/client/vbi-client';
import { conservation } from '@vbi/server/ledger/conservation';
import { ServerFixture, serverFixture } from '../helpers/server';
import { freePort } from '@vbi/server/ops/service-process';
import { killServer } from '../helpers/processes';

/**
 * The database server lost under load, with a synchronous standby (docs/operations.md, "A standby
 * and failover"): two embedded PostgreSQL servers from the same binaries, the second a streaming
 * standby every commit waits for. Four mailers print; the primary dies (postmaster and backends,
 * as when its machine fails); the standby is promoted. The service finds the new primary by itself
 * (it was given both URLs), takes its leases again, and serves; every indicium a mailer received
 * is on the new primary, conservation holds, and no module is inhibited.
 */
describe('failover to a synchronous standby under load', function () {
  this.timeout(300_000);
  let dir: string;
  let primary: EmbeddedPostgres;
  let standby: EmbeddedPostgres;
  let db: Database;
  let f: ServerFixture;

  before(async () => {
    const root = process.env.VBI_TEST_ROOT as string;
    dir = mkdtempSync(join(root, 'failover-'));
    chmodSync(root, statSync(root).mode | 0o001);
    chmodSync(dir, 0o711);
    primary = await startEmbeddedPostgres({ dataDir: join(dir, 'primary'), port: await freePort() });
    await createStandby({ primaryUrl: primary.url, dataDir: join(dir, 'standby'), pgBinDir: process.env.VBI_PG_BINDIR });
    standby = await startStandbyServer({ dataDir: join(dir, 'standby'), port: await freePort() });
    await requireSynchronousStandby(primary.url);
    for (let i = 0; i < 100 && (await synchronousStandbys(primary.url)) < 1; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await synchronousStandbys(primary.url)).to.equal(1);
    db = await openDatabase({ url: primary.url, standbyUrls: [standby.url], varDir: dir });
    f = await serverFixture({ db });
  });
  after(async () => {
    await f?.close();
    await db?.close();
    await standby?.stop();
    await primary?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the primary killed while four mailers print: the standby is promoted, the service serves on, and no acknowledged indicium is missing', async () => {
    const mailers = await Promise.all([0, 1, 2, 3].map((i) => VbiClient.register({
      baseUrl: f.url, rootCertPem: f.rootPem, name: `Failover ${i}`, licensingZip: '20260', returnAddress: ['Failover', '1 Main St'],
      password: 'failover password', keyFilePath: join(dir, `key-${i}.json`), http: { attempts: 1 },
    })));
    for (const c of mailers) {
      await c.buy({ amount: 200_000, payment: { kind: 'card', token: 'tok_approve' } });
      await c.openSession({ heartbeats: false });
    }
    // every indicium a mailer received: (meter, piece number it carries)
    const received: Array<{ meterId: string; sequence: number; postage: number }> = [];
    const codes = new Map<string, number>();
    let stop = false;
    const loops = mailers.map(async (c) => {
      while (!stop) {
        try {
          const out = await c.print([{ destinationZip: '10001', postage: 100 }, { destinationZip: '10002', postage: 150 }]);
          for (const item of out.items) if (item.status === 'printed' && item.receipt && item.decoded) received.push({ meterId: c.meterId, sequence: item.decoded.fields.sequence, postage: item.receipt.amount });
        } catch (e) {
          const code = (e as { code?: string }).code ?? 'ERROR';
          codes.set(code, (codes.get(code) ?? 0) + 1);
          if (code === 'SESSION_ENDED' || code === 'SESSION_NOT_FOUND') await c.openSession({ heartbeats: false }).catch(() => undefined);
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    });
    // the print loops stop whatever happens: left running, they would keep the test run from ending
    let atPromotion = 0;
    try {
      await new Promise((r) => setTimeout(r, 1_000));
      const before = received.length;
      expect(before).to.be.greaterThan(0);
      killServer(join(dir, 'primary'));
      await new Promise((r) => setTimeout(r, 1_000));
      await promote(standby.url);
      // the monitor takes the leases again on the new primary; run passes now too
      for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
        await f.service.checkModules();
        if (f.service.status().modules.every((m) => m.inRotation)) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      // serving: Idle, or User while a mailer's print (they go on printing) is in the module
      expect(f.service.status().modules.map((m) => [m.inRotation, ['Idle', 'User'].includes(m.state)]), JSON.stringify(f.service.status().modules)).to.deep.equal([[true, true]]);
      // printing goes on on the new primary
      atPromotion = received.length;
      for (let i = 0; i < 200 && received.length < atPromotion + 8; i++) await new Promise((r) => setTimeout(r, 100));
    } finally {
      stop = true;
      await Promise.all(loops);
    }
    expect(received.length, JSON.stringify([...codes])).to.be.at.least(atPromotion + 8);
    expect(codes.get('DATABASE_UNAVAILABLE') ?? 0, JSON.stringify([...codes])).to.be.greaterThan(0);

    // every acknowledged indicium is on the new primary, with its postage
    const rows = await db.knex('indicia').select('meter_id', 'sequence', 'postage');
    const have = new Map(rows.map((r) => [`${r.meter_id}#${r.sequence}`, Number(r.postage)]));
    const missing = received.filter((x) => have.get(`${x.meterId}#${x.sequence}`) !== x.postage);
    expect(missing).to.deep.equal([]);
    expect((await conservation(db.knex)).violations).to.deep.equal([]);
    expect(await db.knex.raw('SELECT pg_is_in_recovery() AS r').then((r) => r.rows[0].r)).to.equal(false);
    expect(await db.primaryUrl()).to.equal(standby.url);
    for (const c of mailers) {
      await c.recover();
      const b = await c.balance();
      const row = await db.knex('meters').where({ meter_id: c.meterId }).first('ascending_register');
      expect(b.ascending).to.equal(Number(row.ascending_register));
      await c.closeSession().catch(() => undefined);
      await c.close();
    }
  });
});
