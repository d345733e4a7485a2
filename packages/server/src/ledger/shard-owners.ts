import knexFactory, { type Knex } from 'knex';
import { createShardOwnersTable, shardOwnerUrl, upsertShardOwner } from '../db/repositories/shard-owners';

/**
 * The shard owner directory (`public.shard_owners`): the URL of the process that serves each
 * shard. The process holding a shard's lease writes its own row once it listens; the others read
 * it to redirect a request for one of that shard's meters. By default the directory is in the
 * shard's own database, which every shard's schema there shares; shards in several databases
 * share one named by VBI_DIRECTORY_URL (ShardOwners.at).
 */
export class ShardOwners {
  /**
   * The directory in the database at `url` (its table made there when missing, from the same
   * migration file the shards' databases run); close() ends its connections.
   */
  static async at(url: string): Promise<ShardOwners & { close(): Promise<void> }> {
    const db = knexFactory({ client: 'pg', connection: url, pool: { min: 0, max: 2 } });
    try {
      await createShardOwnersTable(db);
    } catch (e) {
      await db.destroy();
      throw e;
    }
    return Object.assign(new ShardOwners(db), { close: () => db.destroy() });
  }

  private readonly cache = new Map<number, { url: string | null; at: number }>();

  /** `ttlMs`: how long a looked-up URL is used before it is read again. */
  constructor(private readonly db: Knex, private readonly ttlMs = 2_000, private readonly clock: () => number = Date.now) {}

  /** Records this process (`instanceId`, reachable at `url`) as the one serving `shard`. Call only while holding the shard's lease. */
  async claim(shard: number, url: string, instanceId: string): Promise<void> {
    await upsertShardOwner(this.db, shard, url, instanceId);
    this.cache.delete(shard);
  }

  /** The URL serving `shard`, or null when no process ever claimed it. */
  async urlOf(shard: number): Promise<string | null> {
    const hit = this.cache.get(shard);
    if (hit && this.clock() - hit.at < this.ttlMs) return hit.url;
    const url = await shardOwnerUrl(this.db, shard);
    this.cache.set(shard, { url, at: this.clock() });
    return url;
  }
}
