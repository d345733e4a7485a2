import type { Knex } from 'knex';

/** Whether the database answers: `select 1`, throwing when it does not. */
export async function pingDatabase(db: Knex): Promise<void> {
  await db.raw('select 1');
}
