import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Client } from 'pg';
import { startEmbeddedPostgres, EmbeddedPostgres } from '@vbi/server/db/embedded-postgres';
import { Database, openDatabase } from '@vbi/server/db/database';

/**
 * A real PostgreSQL for the tests: DATABASE_URL when set, otherwise one embedded server per test
 * run (in the run's temp directory). Every call returns a fresh, migrated database on it.
 */
let server: Promise<EmbeddedPostgres> | undefined;
const opened: Database[] = [];

async function serverUrl(): Promise<string> {
  if (process.env.DATABASE_URL) return process.env.DATABASE_URL;
  server ??= startEmbeddedPostgres({ dataDir: join(process.env.VBI_TEST_ROOT as string, 'pgdata'), log: process.env.VBI_DB_LOG === '1' });
  return (await server).url;
}

export async function freshDatabase(): Promise<Database> {
  const base = new URL(await serverUrl());
  const name = `t_${randomBytes(6).toString('hex')}`;
  const admin = new Client({ connectionString: base.toString() });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  base.pathname = `/${name}`;
  const db = await openDatabase({ url: base.toString(), varDir: process.env.VBI_TEST_ROOT as string });
  opened.push(db);
  return db;
}

export async function closeTestDatabases(): Promise<void> {
  for (const db of opened.splice(0)) await db.close().catch(() => undefined);
  if (server) await (await server).stop();
  server = undefined;
}
