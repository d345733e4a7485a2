import type { Knex } from 'knex';

/** The accounts table: a mailer's account. */

export async function setReturnAddress(db: Knex, accountId: number, returnAddress: string[]): Promise<void> {
  await db('accounts').where({ account_id: accountId }).update({ return_address: returnAddress });
}

export async function deleteAccount(db: Knex, accountId: number): Promise<void> {
  await db('accounts').where({ account_id: accountId }).del();
}

/** A new account; its id. */
export async function insertAccount(db: Knex, row: { name: string; licensingZip: string }): Promise<number> {
  const [inserted] = await db('accounts').insert({ name: row.name, licensing_zip: row.licensingZip }).returning('account_id');
  return inserted.account_id;
}

export interface AccountRow { account_id: number; name: string; licensing_zip: string; return_address: string[] | null; [column: string]: unknown }

/** The account's row, every column. */
export async function accountRow(db: Knex, accountId: number): Promise<AccountRow | undefined> {
  return db('accounts').where({ account_id: accountId }).first();
}
