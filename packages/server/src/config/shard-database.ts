import { Database, openDatabase } from '../db/database';
import type { Config } from './config';
import { shardSchema } from './shard';

/** The database of the configured shard: DATABASE_URL (and standbys) or the embedded server, the shard's schema. */
export function openShardDatabase(config: Pick<Config, 'databaseUrl' | 'databaseStandbyUrls' | 'varDir' | 'walArchive' | 'shard' | 'dbLog'>, poolSize?: number): Promise<Database> {
  return openDatabase({
    url: config.databaseUrl, standbyUrls: config.databaseStandbyUrls, varDir: config.varDir, archive: config.walArchive,
    schema: shardSchema(config.shard), poolSize, log: config.dbLog,
  });
}
