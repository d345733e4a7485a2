import type { EventEmitter } from 'node:events';
import { join } from 'node:path';
import knexFactory, { type Knex } from 'knex';
import { types } from 'pg';
import { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded-postgres';
import { migrate } from './migrations';
import { defaultWalArchive, type WalArchiveSettings } from './wal-archive';
import { PrimaryFinder } from './primary-finder';

/**
 * bigint (int8) columns hold mills and counters: read them as JavaScript numbers, refusing any
 * value outside the safe-integer range rather than rounding it.
 */
types.setTypeParser(20, (v: string) => {
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Error(`int8 value ${v} is outside the safe integer range`);
  return n;
});

export interface Database {
  knex: Knex;
  /** The configured (first) URL, for messages and tools; connections go to primaryUrl(). */
  url: string;
  /** The primary's URL now: `url`, or with standbys configured the one that is primary (packages/server/src/db/primary-finder.ts). */
  primaryUrl(): Promise<string>;
  /** Destroys the pool, then stops the embedded server if this call started one. */
  close(): Promise<void>;
}

/**
 * Connects to `url` (DATABASE_URL) or, without one, to an embedded cluster in <varDir>/pgdata,
 * and brings the schema up to date. Fails (leaving nothing running) if migrating fails,
 * e.g. with DB_NEWER_THAN_CODE. Whoever starts the embedded cluster starts it archiving its WAL
 * (`archive`, or the default archive under varDir): a start without archiving would leave a gap
 * in the archive that no later restore could cross.
 */
export async function openDatabase(opts: {
  url?: string; standbyUrls?: readonly string[]; varDir: string; poolSize?: number; archive?: WalArchiveSettings;
  /** A shard's own schema (packages/server/src/config/shard.ts): created when missing, the only one on every connection's search_path. */
  schema?: string;
  /** The embedded server's output on stderr (startEmbeddedPostgres). */
  log?: boolean;
}): Promise<Database> {
  let server: EmbeddedPostgres | undefined;
  let url = opts.url;
  if (!url) {
    server = await startEmbeddedPostgres({ dataDir: join(opts.varDir, 'pgdata'), archive: opts.archive ?? defaultWalArchive(opts.varDir), log: opts.log });
    url = server.url;
  }
  const finder = opts.standbyUrls?.length ? new PrimaryFinder([url, ...opts.standbyUrls]) : undefined;
  const searchPath = opts.schema ? { searchPath: [opts.schema] } : {};
  const knex = finder ? failoverKnex(finder, opts.poolSize ?? 20, searchPath) : knexFactory({ client: 'pg', connection: url, pool: { min: 0, max: opts.poolSize ?? 20 }, ...searchPath });
  const primaryUrl = finder ? () => finder.current() : () => Promise.resolve(url as string);
  const close = async (): Promise<void> => {
    try {
      await knex.destroy();
    } finally {
      await server?.stop();
    }
  };
  try {
    if (opts.schema) await knex.raw('CREATE SCHEMA IF NOT EXISTS ??', [opts.schema]);
    await migrate(knex);
  } catch (e) {
    await close();
    throw e;
  }
  return { knex, url, primaryUrl, close };
}

/**
 * A pool whose connections go to whichever server is primary now. knex asks the provider for the
 * connection settings again only while its expiration checker says so: here, while the finder is
 * stale — at first, after a connection to the primary failed, or after a new connection could not
 * be made (a failover, or the primary restarting). Existing connections are then replaced too.
 */
function failoverKnex(finder: PrimaryFinder, max: number, searchPath: { searchPath?: string[] }): Knex {
  const knex = knexFactory({
    client: 'pg',
    ...searchPath,
    connection: async () => ({ connectionString: await finder.current(), expirationChecker: () => finder.stale }),
    pool: {
      min: 0, max,
      afterCreate: (conn: EventEmitter, done: (e: Error | null, c: EventEmitter) => void) => {
        conn.on('error', () => finder.markStale());
        done(null, conn);
      },
    },
  });
  (knex.client as { pool?: EventEmitter }).pool?.on('createFail', () => finder.markStale());
  return knex;
}
