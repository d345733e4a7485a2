import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Knex } from 'knex';
import { SQL_DIR } from '../migrations';

/** The shard owner directory, public.shard_owners: the URL of the process that serves each shard. */

/** Makes the table when missing, from the same migration file the shards' databases run. */
export async function createShardOwnersTable(db: Knex): Promise<void> {
  await db.raw(readFileSync(join(SQL_DIR, '0260_shard_owners.sql'), 'utf8'));
}

/** Records the process `instanceId`, reachable at `url`, as the one serving `shard` since now. */
export async function upsertShardOwner(db: Knex, shard: number, url: string, instanceId: string): Promise<void> {
  await db.raw(
    `INSERT INTO public.shard_owners (shard, url, instance_id, since) VALUES (?, ?, ?, now())
     ON CONFLICT (shard) DO UPDATE SET url = EXCLUDED.url, instance_id = EXCLUDED.instance_id, since = now()`,
    [shard, url, instanceId]);
}

/** The URL serving `shard`, or null when no process ever claimed it. */
export async function shardOwnerUrl(db: Knex, shard: number): Promise<string | null> {
  const row = await db.raw('SELECT url FROM public.shard_owners WHERE shard = ?', [shard]);
  return row.rows[0]?.url ?? null;
}
