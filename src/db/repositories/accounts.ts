import type { Knex } from 'knex';

/** The accounts table: a mailer's account. */

export async function setReturnAddress(db: Knex, accountId: number, returnAddress: string[]): Promise<void> {
  await db('accounts').where({ account_id: accountId }).update({ return_address: returnAddress });
}

export async function deleteAccount(db: Knex, accountId: number): Promise<void> {
  await db('accounts').where({ account_id: accountId }).del();
}
