import { expect } from 'chai';
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { EmbeddedPostgres, startEmbeddedPostgres } from '@vbi/server/db/embedded-postgres';
import { Database, openDatabase } from '@vbi/server/db/database';
import { VbiClient } from '@vbi/client/client/vbi-client';
import { conservation } from '@vbi/server/ledger/conservation';
import { ServerFixture, serverFixture } from '../helpers/server';
import { freePort } from '@vbi/server/ops/service-process';
import { killServer } from '../helpers/processes';

/**
 * The service's PostgreSQL (a DATABASE_URL server) killed with SIGKILL under load and started
 * again on the same port: requests in flight fail with the retryable DATABASE_UNAVAILABLE (503),
 * nothing committed is lost, the service takes its leases again and serves without a restart,
 * and the mailers' SDK finishes what it had in flight.
 */
describe('PostgreSQL killed and restarted under the running service', function () {
  this.timeout(300_000);
  let dir: string;
  let port: number;
  let pg: EmbeddedPostgres;
  let db: Database;
  let f: ServerFixture;

  before(async () => {
    const root = process.env.VBI_TEST_ROOT as string;
    dir = mkdtempSync(join(root, 'pg-restart-'));
    // as root the server runs as 'postgres': let it through the run's private directories
    chmodSync(root, statSync(root).mode | 0o001);
    chmodSync(dir, 0o711);
    port = await freePort();
    pg = await startEmbeddedPostgres({ dataDir: join(dir, 'pgdata'), port });
    db = await openDatabase({ url: pg.url, varDir: dir });
    f = await serverFixture({ db });
  });
  after(async () => {
    await f?.close();
    await db?.close();
    await pg?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('in-flight requests fail with DATABASE_UNAVAILABLE; after the restart the service serves again and nothing is lost', async () => {
    const mailers = await Promise.all([0, 1].map((i) => VbiClient.register({
      baseUrl: f.url, rootCertPem: f.rootPem, name: `PG ${i}`, licensingZip: '20260', returnAddress: ['PG', '1 Main St'],
      password: 'pg restart password', keyFilePath: join(dir, `key-${i}.json`), http: { attempts: 1 },
    })));
    for (const c of mailers) {
      await c.buy({ amount: 100_000, payment: { kind: 'card', token: 'tok_approve' } });
      await c.openSession({ heartbeats: false });
    }
    // load: both mailers print in a loop; the postmaster is killed in the middle of it
    const codes = new Map<string, number>();
    let stop = false;
    const loops = mailers.map(async (c) => {
      while (!stop) {
        try {
          await c.print([{ destinationZip: '10001', postage: 100 }, { destinationZip: '10002', postage: 200 }]);
        } catch (e) {
          const code = (e as { code?: string }).code ?? 'ERROR';
          codes.set(code, (codes.get(code) ?? 0) + 1);
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    });
    await new Promise((r) => setTimeout(r, 700));
    // the whole server dies, as when its machine fails: postmaster and backends together (a
    // backend left alive could still commit on the old server after a new one has started)
    killServer(join(dir, 'pgdata'));
    await new Promise((r) => setTimeout(r, 1_500));
    stop = true;
    await Promise.all(loops);
    expect(codes.get('DATABASE_UNAVAILABLE') ?? 0, JSON.stringify([...codes])).to.be.greaterThan(0);
    const health = await fetch(`${f.url}/v1/health`);
    expect(health.status).to.equal(503);

    pg = await startEmbeddedPostgres({ dataDir: join(dir, 'pgdata'), port });
    // the monitor's next pass (every 2 s) takes the leases again; run passes now too (one of the
    // monitor's may be half-way, holding the lease renewal this pass would need)
    // (a deadline, not a count of passes: a loaded machine's first passes can all meet a server
    // still finishing crash recovery)
    for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
      await f.service.checkModules();
      if (f.service.status().modules.every((m) => m.inRotation)) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(f.service.status().modules.map((m) => m.inRotation), JSON.stringify(f.service.status().modules)).to.deep.equal([true]);
    expect((await fetch(`${f.url}/v1/health`)).status).to.equal(200);
    for (const c of mailers) {
      if (c.session?.ended) await c.openSession({ heartbeats: false });
      await c.recover();
      expect(c.state.pending ?? []).to.deep.equal([]);
      const out = await c.print([{ destinationZip: '20500', postage: 300 }]);
      expect(out.printed).to.equal(1);
      const row = await db.knex('meters').where({ meter_id: c.meterId }).first('ascending_register', 'descending_register');
      expect(c.registers).to.deep.equal({ ascending: Number(row.ascending_register), descending: Number(row.descending_register) });
      const sum = await db.knex('indicia').where({ meter_id: c.meterId }).sum({ s: 'postage' });
      expect(Number(sum[0].s)).to.equal(Number(row.ascending_register));
      await c.closeSession();
    }
    expect((await conservation(db.knex)).violations).to.deep.equal([]);
    // answers that could not be recorded while the database was away are recorded by now (retried every second)
    for (let i = 0; i < 50 && (await db.knex('idempotency_keys').where({ state: 'in_progress' })).length > 0; i++) await new Promise((r) => setTimeout(r, 200));
    expect(await db.knex('idempotency_keys').where({ state: 'in_progress' })).to.deep.equal([]);
    expect(f.service.status().modules.every((m) => m.inRotation && m.state === 'Idle')).to.equal(true);
  });
});
