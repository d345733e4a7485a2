import type { Knex } from 'knex';

/** The idempotency_keys table: one row per (scope, key) of an idempotent request. */
const TABLE = 'idempotency_keys';

export interface IdempotencyKeyRow {
  request_hash: Buffer;
  status: number | null;
  response: unknown;
  state: 'in_progress' | 'done';
  owner: string | null;
  created_at: Date;
}

/** Inserts the key in progress unless it exists; the created_at of the row inserted, none when it existed. */
export async function insertKeyIfAbsent(db: Knex, row: { scope: string; key: string; requestHash: Buffer; owner: string; run: string }): Promise<Array<{ created_at: Date }>> {
  return db(TABLE)
    .insert({ scope: row.scope, key: row.key, request_hash: row.requestHash, state: 'in_progress', owner: row.owner, run_id: row.run })
    .onConflict(['scope', 'key'])
    .ignore()
    .returning('created_at');
}

export async function findKey(db: Knex, scope: string, key: string): Promise<IdempotencyKeyRow | undefined> {
  return db(TABLE).where({ scope, key }).first('request_hash', 'status', 'response', 'state', 'owner', 'created_at');
}

/** Takes an in-progress key over from `previousOwner` (null: released) for `owner`'s run; the rows taken (0 or 1). */
export async function takeOverKey(db: Knex, k: { scope: string; key: string; previousOwner: string | null; owner: string; run: string }): Promise<number> {
  return db(TABLE).where({ scope: k.scope, key: k.key, state: 'in_progress' })
    .where((q) => (k.previousOwner === null ? q.whereNull('owner') : q.where('owner', k.previousOwner)))
    .update({ owner: k.owner, run_id: k.run });
}

/** While the key is still in progress under `run`: releases it (owner NULL). */
export async function releaseKey(db: Knex, k: { scope: string; key: string; run: string }): Promise<number> {
  return db(TABLE).where({ scope: k.scope, key: k.key, state: 'in_progress', run_id: k.run }).update({ owner: null });
}

/** While the key is still in progress under `run`: records its answer (state 'done'). */
export async function recordKeyAnswer(db: Knex, k: { scope: string; key: string; run: string }, status: number, response: string | null): Promise<number> {
  return db(TABLE).where({ scope: k.scope, key: k.key, state: 'in_progress', run_id: k.run }).update({ state: 'done', status, response });
}

/** Deletes keys created before `olderThan` ('done' ones only unless `includeInProgress`); the number deleted. */
export async function deleteKeysBefore(db: Knex, olderThan: Date, includeInProgress: boolean): Promise<number> {
  const q = db(TABLE).where('created_at', '<', olderThan);
  if (!includeInProgress) q.andWhere({ state: 'done' });
  return q.delete();
}
