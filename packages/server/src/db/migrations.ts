import { readdirSync, readFileSync } from 'node:fs';
import { extname, join, resolve } from 'node:path';
import type { Knex } from 'knex';
import type { ClientBase } from 'pg';

/**
 * Plain-SQL migrations: `sql/NNNN_description.sql`, applied in version order, each in its own
 * transaction, recorded in `schema_migrations`. Files must not contain BEGIN/COMMIT or statements
 * that cannot run inside a transaction (CREATE INDEX CONCURRENTLY, ...).
 */

/**
 * The server package's sql/ directory (packages/server/sql). Compiled: packages/server/dist/src/db/migrations.js;
 * from source (ts-node, tsx): packages/server/src/db/migrations.ts. tsc does not copy .sql files into dist/.
 */
export const SQL_DIR = resolve(__dirname, extname(__filename) === '.ts' ? '../..' : '../../..', 'sql');

const FILE_NAME = /^(\d{4})_([a-z0-9_-]+)\.sql$/i;
/** Key of the session advisory lock held while migrating (ASCII "vbi_mig"). */
const LOCK_KEY = '33322251963951463';

export interface Migration {
  version: number;
  name: string;
  file: string;
}

/** The database was migrated by newer code than this; refuse to run against it. */
export class DbNewerThanCodeError extends Error {
  readonly code = 'DB_NEWER_THAN_CODE' as const;
  constructor(
    readonly dbVersion: number,
    readonly codeVersion: number,
  ) {
    super(
      `database schema is at version ${dbVersion} but this code only knows migrations up to ${codeVersion}; ` +
        'run a newer release (downgrades are not supported)',
    );
    this.name = 'DbNewerThanCodeError';
  }
}

/** The migration files in `dir`, sorted by version. Other .sql names and duplicate versions are errors. */
export function listMigrations(dir: string = SQL_DIR): Migration[] {
  const out: Migration[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.sql')).sort()) {
    const m = FILE_NAME.exec(file);
    if (!m) throw new Error(`${join(dir, file)}: migration files must be named NNNN_description.sql`);
    const version = Number(m[1]);
    if (version === 0 || out.some((x) => x.version === version)) {
      throw new Error(`${join(dir, file)}: version ${m[1]} is zero or used twice`);
    }
    out.push({ version, name: m[2], file: join(dir, file) });
  }
  return out;
}

/**
 * Applies the pending migrations and returns their versions ([] when up to date). A session
 * advisory lock serialises concurrent callers: the second waits, then finds nothing to do.
 */
export async function migrate(knex: Knex, dir: string = SQL_DIR): Promise<number[]> {
  const migrations = listMigrations(dir);
  const known = migrations.at(-1)?.version ?? 0;
  // File bodies go to the raw pg connection (simple query protocol, many statements per call):
  // knex.raw() rewrites every '?' into '$n', even inside string literals and comments.
  const conn = (await knex.client.acquireConnection()) as ClientBase;
  try {
    await conn.query('SELECT pg_advisory_lock($1)', [LOCK_KEY]);
    try {
      await conn.query(
        `CREATE TABLE IF NOT EXISTS schema_migrations (
           version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      const { rows } = await conn.query<{ version: number }>('SELECT version FROM schema_migrations');
      const applied = new Set(rows.map((r) => r.version));
      const newest = Math.max(0, ...applied);
      if (newest > known) throw new DbNewerThanCodeError(newest, known);

      const done: number[] = [];
      for (const m of migrations.filter((x) => !applied.has(x.version))) {
        const sql = readFileSync(m.file, 'utf8');
        await conn.query('BEGIN');
        try {
          await conn.query(sql);
          await conn.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
          await conn.query('COMMIT');
        } catch (e) {
          await conn.query('ROLLBACK').catch(() => undefined);
          throw new Error(`migration ${m.file} failed: ${(e as Error).message}`, { cause: e });
        }
        done.push(m.version);
      }
      return done;
    } finally {
      // A broken connection has lost the lock with its session anyway.
      await conn.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]).catch(() => undefined);
    }
  } finally {
    await knex.client.releaseConnection(conn);
  }
}
