import { join } from 'node:path';
import knexFactory, { type Knex } from 'knex';
import { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded-postgres';
import { migrate } from './migrations';

export interface Database {
  knex: Knex;
  url: string;
  /** Destroys the pool, then stops the embedded server if this call started one. */
  close(): Promise<void>;
}

/**
 * Connects to `url` (DATABASE_URL) or, without one, to an embedded cluster in <varDir>/pgdata,
 * and brings the schema up to date. Fails (leaving nothing running) if migrating fails,
 * e.g. with DB_NEWER_THAN_CODE.
 */
export async function openDatabase(opts: { url?: string; varDir: string }): Promise<Database> {
  let server: EmbeddedPostgres | undefined;
  let url = opts.url;
  if (!url) {
    server = await startEmbeddedPostgres({ dataDir: join(opts.varDir, 'pgdata') });
    url = server.url;
  }
  const knex = knexFactory({ client: 'pg', connection: url, pool: { min: 0, max: 10 } });
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
