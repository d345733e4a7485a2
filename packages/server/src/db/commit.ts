import type { Knex } from 'knex';

/**
 * COMMIT of a transaction taken with `await db.transaction()`, throwing when it failed. knex's
 * `commit()` resolves even when the COMMIT statement fails (a connection lost at that moment, a
 * server killed): the failure rejects only the transaction's `executionPromise`. A caller that
 * acts on a commit — a checkpoint appended to a module's ring, an indicium released — must know.
 */
export async function commitOrThrow(trx: Knex.Transaction): Promise<void> {
  await trx.commit();
  await trx.executionPromise;
}
