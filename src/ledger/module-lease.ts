import { createHash } from 'node:crypto';
import { Client } from 'pg';
import type { Knex } from 'knex';
import { vbiError } from '../errors';

/** First key of every advisory lock this service takes ("VBI1"); the second names the resource. */
const LOCK_CLASS = 0x56424931 | 0;

/**
 * An exclusive lease on a resource shared through the database — a module token (its ring is
 * cached in memory, so one process only) or a meter map shard (its anchor is one process's
 * memory) — held as a PostgreSQL session advisory lock on a connection of its own, for the
 * life of the process. A second process gets MODULE_IN_USE before it touches the token.
 * When the lease connection drops the lease is lost (another process may take it): `lost` turns
 * true and the transaction engine stops using what it covered.
 */
export class Lease {
  private lostReason: string | null = null;

  private constructor(readonly resource: string, private readonly client: Client) {
    const lose = (why: string) => {
      if (!this.lostReason) this.lostReason = why;
    };
    client.on('error', (e) => lose(`lease connection failed: ${e.message}`));
    client.on('end', () => lose('lease connection closed'));
  }

  /** Takes the lease or fails at once with MODULE_IN_USE. */
  static async acquire(req: { url: string; resource: string }): Promise<Lease> {
    const client = new Client({ connectionString: req.url, application_name: `vbi lease ${req.resource}`.slice(0, 63) });
    await client.connect();
    try {
      const r = await client.query('SELECT pg_try_advisory_lock($1::int, $2::int) AS ok', [LOCK_CLASS, lockKey(req.resource)]);
      if (r.rows[0].ok !== true) {
        throw vbiError('MODULE_IN_USE', `${req.resource} is held by another process of this deployment (one owner at a time)`, { resource: req.resource });
      }
    } catch (e) {
      await client.end().catch(() => undefined);
      throw e;
    }
    return new Lease(req.resource, client);
  }

  /** Why the lease is gone, or null while it is held. */
  get lost(): string | null {
    return this.lostReason;
  }

  async release(): Promise<void> {
    if (this.lostReason) return;
    this.lostReason = 'released';
    await this.client.end().catch(() => undefined);
  }
}

/**
 * Whether some process holds the lease on `resource` now (pg_locks; the two int4 keys of an
 * advisory lock appear there as classid and objid, unsigned, with objsubid 2).
 */
export async function leaseHeld(db: Knex, resource: string): Promise<boolean> {
  const r = await db.raw(
    `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2
       AND classid::bigint = ? AND objid::bigint = ?) AS held`,
    [LOCK_CLASS >>> 0, lockKey(resource) >>> 0],
  );
  return r.rows[0].held === true;
}

export const moduleResource = (serial: string) => `module ${serial}`;
export const instanceResource = (id: string) => `instance ${id}`;
export const mapShardResource = (shard: number) => `meter map shard ${shard}`;

function lockKey(resource: string): number {
  return createHash('sha256').update(resource, 'utf8').digest().readInt32BE(0);
}
