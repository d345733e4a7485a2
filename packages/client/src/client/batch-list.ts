import { vbiError } from '@vbi/core/errors';
import { csvRecords } from './csv';
import { parseMills } from './money';
import type { PrintItemRequest } from './print-item';

/**
 * A mailing list for `vbi print-batch` (WO 99/41690 "print from mailing lists"): CSV with a header
 * row naming these columns, in any order (names are case-insensitive):
 *
 *   to       required  delivery address lines separated by '|' ("Name|Street|City ST ZIP")
 *   zip      required  destination ZIP: 5, 9 or 11 digits
 *   weight   weight in ounces: the piece is priced from the rate table
 *   class    mail class for `weight` (default: the key file's, first-class-letter)
 *   zone     1..9, for zoned classes (priority-mail, ground-advantage)
 *   postage  a fixed amount instead of weight, e.g. 0.68 (at most 3 decimals)
 *   file     label file name without extension (default: the record number, 0001, 0002, ...)
 *
 * Each record needs `weight` or `postage`; with both, the rate must equal `postage`.
 */
export const BATCH_COLUMNS = ['to', 'zip', 'weight', 'class', 'zone', 'postage', 'file'] as const;

/** One record of the list. */
export interface BatchRow {
  /** 1 for the first record after the header. */
  record: number;
  deliveryAddress: string[];
  item: PrintItemRequest;
  /** Label file name without extension. */
  file: string;
}

/** Parses and checks the whole list before anything is printed; BAD_REQUEST names the record and column. */
export function parseBatchList(text: string, defaults: { mailClass: string }): BatchRow[] {
  const records = csvRecords(text);
  if (records.length === 0) throw vbiError('BAD_REQUEST', 'the mailing list has no records');
  const columns = Object.keys(records[0].values);
  const unknown = columns.find((c) => !(BATCH_COLUMNS as readonly string[]).includes(c));
  if (unknown !== undefined) throw vbiError('BAD_REQUEST', `unknown CSV column '${unknown}' (columns: ${BATCH_COLUMNS.join(', ')})`);
  for (const required of ['to', 'zip']) {
    if (!columns.includes(required)) throw vbiError('BAD_REQUEST', `the CSV header has no '${required}' column`);
  }
  const files = new Set<string>();
  return records.map(({ record, values: v }) => {
    const bad = (column: string, why: string): never => {
      throw vbiError('BAD_REQUEST', `record ${record}, column ${column}: ${why}`, { record, column });
    };
    const deliveryAddress = (v.to ?? '').split('|').map((l) => l.trim()).filter((l) => l.length > 0);
    if (deliveryAddress.length === 0) bad('to', 'empty address');
    const zip = (v.zip ?? '').replace(/-/g, '');
    if (!/^(\d{5}|\d{9}|\d{11})$/.test(zip)) bad('zip', `'${v.zip}' must have 5, 9 or 11 digits`);
    const item: PrintItemRequest = { destinationZip: zip };
    if (v.weight) {
      const weightOz = Number(v.weight);
      if (!/^\d+(\.\d+)?$/.test(v.weight) || !(weightOz > 0)) bad('weight', `'${v.weight}' is not a positive number of ounces`);
      let zone: number | undefined;
      if (v.zone) {
        zone = Number(v.zone);
        if (!/^[1-9]$/.test(v.zone)) bad('zone', `'${v.zone}' must be 1..9`);
      }
      item.rate = { mailClass: v.class || defaults.mailClass, weightOz, ...(zone !== undefined ? { zone } : {}) };
    } else if (v.class || v.zone) {
      bad('weight', 'class and zone need a weight');
    }
    if (v.postage) {
      try {
        item.postage = parseMills(v.postage, 'postage');
      } catch (e) {
        bad('postage', (e as Error).message);
      }
    }
    if (!item.rate && item.postage === undefined) bad('weight', 'give a weight or a postage');
    const file = v.file || String(record).padStart(4, '0');
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$/.test(file)) bad('file', `'${file}' is not a plain file name`);
    if (files.has(file)) bad('file', `'${file}' is used twice`);
    files.add(file);
    return { record, deliveryAddress, item, file };
  });
}
