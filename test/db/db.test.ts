import { expect } from 'chai';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import knexFactory from 'knex';
import { openDatabase, type Database } from '@vbi/server/db/database';
import { DbNewerThanCodeError, listMigrations, migrate, SQL_DIR } from '@vbi/server/db/migrations';

/**
 * Runs against a real PostgreSQL: an embedded cluster in a temp directory, or DATABASE_URL
 * when set (then the embedded-only cases are skipped and the fake version row is removed).
 */
const externalUrl = process.env.DATABASE_URL || undefined;
const FAKE_VERSION = 999_999;

/** Resolves true when something accepts TCP connections on 127.0.0.1:port. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

describe('database foundation (real PostgreSQL)', function () {
  this.timeout(60_000);
  let varDir: string;
  let db: Database | undefined;

  before(async () => {
    varDir = mkdtempSync(join(tmpdir(), 'vbi-db-test-'));
    db = await openDatabase({ url: externalUrl, varDir });
  });

  after(async () => {
    if (db) {
      if (externalUrl) await db.knex('schema_migrations').where({ version: FAKE_VERSION }).delete();
      await db.close();
    }
    rmSync(varDir, { recursive: true, force: true });
  });

  it('finds the packages/server/sql/ directory from the compiled file', () => {
    expect(existsSync(join(SQL_DIR, '0001_init.sql'))).to.equal(true);
  });

  it('applies every migration file and records it', async () => {
    const rows = await db!.knex('schema_migrations').select('version', 'name', 'applied_at').orderBy('version');
    expect(rows.map((r) => r.version)).to.deep.equal(listMigrations().map((m) => m.version));
    expect(rows[0]).to.include({ version: 1, name: 'init' });
    expect(rows[0].applied_at).to.be.instanceOf(Date);
    const { rows: schemas } = await db!.knex.raw("SELECT 1 FROM pg_tables WHERE tablename = 'journal'");
    expect(schemas).to.have.length(1);
  });

  it('re-running is a no-op', async () => {
    const before = await db!.knex('schema_migrations').select().orderBy('version');
    expect(await migrate(db!.knex)).to.deep.equal([]);
    expect(await db!.knex('schema_migrations').select().orderBy('version')).to.deep.equal(before);
  });

  it('two concurrent runners apply a migration once', async function () {
    if (externalUrl) this.skip(); // needs CREATE DATABASE
    await db!.knex.raw('CREATE DATABASE vbi_race');
    const url = new URL(db!.url);
    url.pathname = '/vbi_race';
    // A file with '?' in a literal checks that bodies bypass knex's binding rewrite.
    const dir = mkdtempSync(join(varDir, 'sql-'));
    writeFileSync(join(dir, '0001_race.sql'), "SELECT pg_sleep(0.2); CREATE TABLE race (q text DEFAULT 'why?');");
    const a = knexFactory({ client: 'pg', connection: url.href });
    const b = knexFactory({ client: 'pg', connection: url.href });
    try {
      const results = await Promise.all([migrate(a, dir), migrate(b, dir)]);
      expect(results.flat()).to.deep.equal([1]);
      await a('race').insert({});
      expect(await a('race').select('q')).to.deep.equal([{ q: 'why?' }]);
    } finally {
      await Promise.all([a.destroy(), b.destroy()]);
    }
  });

  it('close stops the embedded server (its port refuses connections)', async function () {
    if (externalUrl) this.skip();
    const port = Number(new URL(db!.url).port);
    expect(await accepts(port)).to.equal(true);
    await db!.close();
    db = undefined;
    expect(await accepts(port)).to.equal(false);
  });

  it('refuses a database newer than the code (DB_NEWER_THAN_CODE)', async () => {
    // Embedded: reopens the existing cluster (no initdb this time) to plant the row, then stops it,
    // since one data directory can be served by one server at a time.
    db ??= await openDatabase({ url: externalUrl, varDir });
    await db.knex('schema_migrations').insert({ version: FAKE_VERSION, name: 'from_the_future' });
    if (!externalUrl) {
      await db.close();
      db = undefined;
    }
    const err = await openDatabase({ url: externalUrl, varDir }).then(
      () => expect.fail('openDatabase should have failed'),
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(DbNewerThanCodeError);
    expect(err).to.include({ code: 'DB_NEWER_THAN_CODE', dbVersion: FAKE_VERSION });
    // The failed open stopped the server it had started: a clean shutdown removes postmaster.pid.
    if (!externalUrl) expect(existsSync(join(varDir, 'pgdata', 'postmaster.pid'))).to.equal(false);
  });
});
