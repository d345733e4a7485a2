import { join } from 'node:path';
import knexFactory, { type Knex } from 'knex';
import { types } from 'pg';
import { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded-postgres';
import { migrate } from './migrations';
import { defaultWalArchive, type WalArchiveSettings } from './wal-archive';

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
  url: string;
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
export async function openDatabase(opts: { url?: string; varDir: string; poolSize?: number; archive?: WalArchiveSettings }): Promise<Database> {
  let server: EmbeddedPostgres | undefined;
  let url = opts.url;
  if (!url) {
    server = await startEmbeddedPostgres({ dataDir: join(opts.varDir, 'pgdata'), archive: opts.archive ?? defaultWalArchive(opts.varDir) });
    url = server.url;
  }
  const knex = knexFactory({ client: 'pg', connection: url, pool: { min: 0, max: opts.poolSize ?? 20 } });
  const close = async (): Promise<void> => {
    try {
      await knex.destroy();
    } finally {
      await server?.stop();
    }
  };
  try {
    await migrate(knex);
  } catch (e) {
    await close();
    throw e;
  }
  return { knex, url, close };
}
