import type { Knex } from 'knex';

/** The journal table (the modules' records) and the indicia written with them: reads by time. */

/** One journal record with its id, if any was written in [from, to). */
export async function anyJournalRecordBetween(db: Knex, from: Date, to: Date): Promise<{ journal_id: number } | undefined> {
  return db('journal').where('created_at', '>=', from).andWhere('created_at', '<', to).first('journal_id');
}

export interface JournalRecordRow {
  created_at: Date; module_serial: string; checkpoint_seq: number | string; meter_id: string; tx_type: string;
  amount: number | string; ascending_register: number | string; descending_register: number | string;
}

/** The journal records written in [from, to). */
export async function journalRecordsBetween(db: Knex, from: Date, to: Date): Promise<JournalRecordRow[]> {
  return db('journal').where('created_at', '>=', from).andWhere('created_at', '<', to)
    .select('created_at', 'module_serial', 'checkpoint_seq', 'meter_id', 'tx_type', 'amount', 'ascending_register', 'descending_register');
}

export interface IndiciumRow {
  created_at: Date; meter_id: string; kind: string; postage: number | string; module_serial: string; checkpoint_seq: number | string;
  data: Buffer; signature: Buffer; indicium_id: number | string;
}

/** The indicia written in [from, to). */
export async function indiciaBetween(db: Knex, from: Date, to: Date): Promise<IndiciumRow[]> {
  return db('indicia').where('created_at', '>=', from).andWhere('created_at', '<', to)
    .select('created_at', 'meter_id', 'kind', 'postage', 'module_serial', 'checkpoint_seq', 'data', 'signature', 'indicium_id');
}
