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

export interface JournalRow {
  journal_id: number; meter_id: string; module_serial: string; checkpoint_seq: number; tx_type: string; amount: number;
  ascending_register: number; descending_register: number; checkpoint: Buffer; payload: Buffer; module_mac: Buffer; created_at: Date; package: Buffer | null;
}

/** A meter's journal rows (every column), oldest first. */
export async function journalOfMeter(db: Knex, meterId: string): Promise<JournalRow[]> {
  return db('journal').where({ meter_id: meterId }).orderBy('journal_id');
}

/** The meter's newest `limit` journal rows (every column), newest first. */
export async function newestJournalOfMeter(trx: Knex.Transaction, meterId: string, limit: number): Promise<JournalRow[]> {
  return trx('journal').where({ meter_id: meterId }).orderBy('journal_id', 'desc').limit(limit);
}

export interface MeterTransactionRow {
  sequence: number | string; tx_type: string; amount: number | string; ascending_register: number | string; descending_register: number | string;
  created_at: Date; receipt: unknown; module_serial: string; checkpoint_seq: number | string;
}

/** The meter's records after its transaction sequence `after`, in order, at most `limit`. */
export async function meterTransactionsAfter(trx: Knex.Transaction, meterId: string, after: number, limit: number): Promise<MeterTransactionRow[]> {
  return trx('journal as j')
    .where('j.meter_id', meterId).where('j.sequence', '>', after)
    .orderBy('j.sequence').limit(limit)
    .select('j.sequence', 'j.tx_type', 'j.amount', 'j.ascending_register', 'j.descending_register', 'j.created_at', 'j.receipt', 'j.module_serial', 'j.checkpoint_seq');
}

/** The meter's indicia written by the records (module serial, checkpoint sequence), by piece number. */
export async function indiciaOfRecords(trx: Knex.Transaction, meterId: string, records: Array<[string, number | string]>): Promise<Array<{
  indicium_id: number | string; sequence: number | string; batch_id: string | null; item_index: number | null; module_serial: string; checkpoint_seq: number | string;
}>> {
  return trx('indicia').where({ meter_id: meterId })
    .whereIn(['module_serial', 'checkpoint_seq'], records)
    .orderBy('sequence').select('indicium_id', 'sequence', 'batch_id', 'item_index', 'module_serial', 'checkpoint_seq');
}

/** One journal row, in its command's transaction. */
export async function insertJournalRow(trx: Knex.Transaction, row: {
  meter_id: string; module_serial: string; checkpoint_seq: number; tx_type: string; amount: number; ascending_register: number; descending_register: number;
  checkpoint: Buffer; payload: Buffer; module_mac: Buffer; created_at: Date;
  /** A replayed row's: its meter's transaction number, its receipt (JSON), the sealed package after it. */
  sequence?: number | null; receipt?: string | null; package?: Buffer | null;
}): Promise<void> {
  await trx('journal').insert(row);
}

/** A module's checkpoint records after sequence `seq`, oldest first, at most `limit`. */
export async function moduleCheckpointsAfter(db: Knex, moduleSerial: string, seq: number, limit: number): Promise<Buffer[]> {
  return (await db('journal').where({ module_serial: moduleSerial }).where('checkpoint_seq', '>', seq)
    .orderBy('checkpoint_seq').limit(limit).select('checkpoint')).map((r: { checkpoint: Buffer }) => r.checkpoint);
}

/** The checkpoint records of the meter's (or master PSD's) journal rows of one type. */
export async function checkpointsOfType(db: Knex, meterId: string, txType: string): Promise<Array<{ checkpoint: Buffer }>> {
  return db('journal').where({ meter_id: meterId, tx_type: txType }).select('checkpoint');
}

/** Every journal row (every column), by module, then sequence number, then id. */
export async function journalInModuleOrder(db: Knex): Promise<JournalRow[]> {
  return db('journal').orderBy('module_serial').orderBy('checkpoint_seq').orderBy('journal_id');
}

/** Every indicium row with the journal record it names, by id. */
export async function indiciaWithRecords(db: Knex): Promise<Array<{ indicium_id: number; meter_id: string; module_serial: string; checkpoint_seq: number; postage: number }>> {
  return db('indicia').select('indicium_id', 'meter_id', 'module_serial', 'checkpoint_seq', 'postage').orderBy('indicium_id');
}

/** The serials of the modules that wrote journal rows. */
export async function journalModuleSerials(db: Knex): Promise<string[]> {
  return (await db('journal').distinct('module_serial')).map((r: { module_serial: string }) => r.module_serial);
}

/** A journal row with the columns the export carries. */
export interface JournalDbRow {
  meter_id: string; module_serial: string; checkpoint_seq: number | string; tx_type: string; amount: number | string;
  ascending_register: number | string; descending_register: number | string; checkpoint: Buffer; payload: Buffer; module_mac: Buffer;
  created_at: Date; sequence: number | string | null; receipt: unknown; package: Buffer | null;
}

/** The module's journal rows after sequence `seq`, in sequence order. */
export async function journalRowsAfter(db: Knex, moduleSerial: string, seq: number): Promise<JournalDbRow[]> {
  return db('journal').where({ module_serial: moduleSerial }).where('checkpoint_seq', '>', seq).orderBy('checkpoint_seq')
    .select('meter_id', 'module_serial', 'checkpoint_seq', 'tx_type', 'amount', 'ascending_register', 'descending_register', 'checkpoint', 'payload', 'module_mac', 'created_at', 'sequence', 'receipt', 'package');
}
