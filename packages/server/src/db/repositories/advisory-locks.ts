import type { Knex } from 'knex';

/**
 * The server's advisory locks as pg_locks shows them (the leases of packages/server/src/ledger/module-lease.ts):
 * the two int4 keys of a lock appear there as classid and objid, unsigned, with objsubid 2.
 */

/** Whether the lock (classId, objId) is granted — to the backend `pid` with one. */
export async function advisoryLockGranted(db: Knex, classId: number, objId: number, pid?: number): Promise<boolean> {
  const r = pid === undefined
    ? await db.raw(
      `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2
         AND classid::bigint = ? AND objid::bigint = ?) AS held`,
      [classId, objId])
    : await db.raw(
      `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2
         AND classid::bigint = ? AND objid::bigint = ? AND pid = ?) AS held`,
      [classId, objId, pid]);
  return r.rows[0].held === true;
}
