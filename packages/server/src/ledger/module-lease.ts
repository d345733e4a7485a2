import { createHash } from 'node:crypto';
import { Client } from 'pg';
import type { Knex } from 'knex';
import { isVbiError, vbiError } from '@vbi/core/errors';
import { advisoryLockGranted } from '../db/repositories/advisory-locks';

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
  private released = false;

  private constructor(readonly resource: string, private readonly url: string | (() => Promise<string>), private client: Client) {
    this.watch(client);
  }

  private watch(client: Client): void {
    const lose = (why: string) => {
      if (client === this.client && !this.lostReason) this.lostReason = why;
    };
    client.on('error', (e) => lose(`lease connection failed: ${e.message}`));
    client.on('end', () => lose('lease connection closed'));
  }

  /**
   * Takes the lease, waiting while another process holds it (a standby, docs/operations.md):
   * asks again every `everyMs`. Other failures (the database away) are thrown.
   */
  static async waitFor(req: { url: string | (() => Promise<string>); resource: string; everyMs?: number }): Promise<Lease> {
    for (;;) {
      try {
        return await Lease.acquire(req);
      } catch (e) {
        if (!isVbiError(e, 'MODULE_IN_USE')) throw e;
      }
      await new Promise((r) => setTimeout(r, req.everyMs ?? 1_000));
    }
  }

  /** Takes the lease or fails at once with MODULE_IN_USE. */
  /** `url`: the database, or how to find its primary now (Database.primaryUrl: a standby may have been promoted). */
  static async acquire(req: { url: string | (() => Promise<string>); resource: string }): Promise<Lease> {
    return new Lease(req.resource, req.url, await lock(typeof req.url === 'string' ? req.url : await req.url(), req.resource));
  }

  /** Why the lease is gone, or null while it is held. */
  get lost(): string | null {
    return this.lostReason;
  }

  /**
   * Does the database server the service now talks to (`db`) see this lease's lock, held by this
   * lease's backend? After a server is killed and restarted, the old backend can go on answering
   * on the lease connection for a while although its lock died with the old server; asked before
   * a module returns to the rotation. A lease not seen there is marked lost (then renewed).
   */
  async check(db: Knex): Promise<boolean> {
    if (this.lostReason) return false;
    const pid = (this.client as unknown as { processID?: number }).processID;
    let held: boolean;
    try {
      held = await advisoryLockGranted(db, LOCK_CLASS >>> 0, lockKey(this.resource) >>> 0, pid ?? -1);
    } catch {
      return false; // the database is away: nothing to decide now
    }
    if (held) return true;
    if (!this.lostReason) this.lostReason = 'the database server does not see this lease (its connection outlived a server restart)';
    await this.client.end().catch(() => undefined);
    return false;
  }

  /**
   * Takes a lost lease again (the database restarted, the connection dropped) on a new
   * connection: true when held again, false while another process holds it or the database is
   * still away. The caller must reload whatever the lease covered before using it again: another
   * process may have used it meanwhile.
   */
  async renew(): Promise<boolean> {
    if (this.released) return false;
    if (!this.lostReason) return true;
    let client: Client;
    try {
      client = await lock(typeof this.url === 'string' ? this.url : await this.url(), this.resource);
    } catch {
      return false;
    }
    const old = this.client;
    this.client = client;
    this.watch(client);
    this.lostReason = null;
    void old.end().catch(() => undefined);
    return true;
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    const wasLost = this.lostReason !== null;
    this.lostReason = 'released';
    if (!wasLost) await this.client.end().catch(() => undefined);
  }
}

/** A connection of its own holding the advisory lock of `resource`, or MODULE_IN_USE. */
async function lock(url: string, resource: string): Promise<Client> {
  const client = new Client({ connectionString: url, application_name: `vbi lease ${resource}`.slice(0, 63) });
  client.on('error', () => undefined); // until the Lease watches it
  await client.connect();
  try {
    const r = await client.query('SELECT pg_try_advisory_lock($1::int, $2::int) AS ok', [LOCK_CLASS, lockKey(resource)]);
    if (r.rows[0].ok !== true) {
      throw vbiError('MODULE_IN_USE', `${resource} is held by another process of this deployment (one owner at a time)`, { resource });
    }
  } catch (e) {
    await client.end().catch(() => undefined);
    throw e;
  }
  return client;
}

/**
 * Whether some process holds the lease on `resource` now (pg_locks; the two int4 keys of an
 * advisory lock appear there as classid and objid, unsigned, with objsubid 2).
 */
export async function leaseHeld(db: Knex, resource: string): Promise<boolean> {
  return advisoryLockGranted(db, LOCK_CLASS >>> 0, lockKey(resource) >>> 0);
}

export const moduleResource = (serial: string) => `module ${serial}`;
export const instanceResource = (id: string) => `instance ${id}`;
/** The lease of a shard (packages/server/src/config/shard.ts): its meter map and so its meters. */
export const mapShardResource = (shard: number) => `meter map shard ${shard}`;

function lockKey(resource: string): number {
  return createHash('sha256').update(resource, 'utf8').digest().readInt32BE(0);
}
