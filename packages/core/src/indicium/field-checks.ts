import { METER_ID_PATTERN } from '../psd/psd-package';
import {
  IndiciumFields,
  ITEM_TYPES,
  MAX_POSTAGE_MILLS,
  MAX_REGISTER_MILLS,
  MAX_SEQUENCE,
  MAX_SERIAL_BYTES,
  SIGNATURE_ALGORITHMS,
} from './fields';

/** One field that breaks the layout's rules; the encoder and decoder map it to their error code. */
export class FieldProblem extends Error {
  constructor(
    readonly field: keyof IndiciumFields | 'version' | 'length',
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

export const RATE_CATEGORY_PATTERN = /^[A-Z0-9]{1,4}$/;
export const SOFTWARE_ID_PATTERN = /^[A-Z0-9][A-Z0-9.-]{0,5}$/;
const SERIAL_PATTERN = /^(?!00)([0-9a-f]{2}){1,20}$/;
const DATE_PATTERN = /^(\d{4})-(\d{2})-(\d{2})$/;

/**
 * The rules every indicium obeys, checked the same way before encoding and after decoding, so
 * that whatever decodes re-encodes to the same bytes. Throws the first FieldProblem.
 */
export function checkFields(f: IndiciumFields): void {
  const fail = (field: keyof IndiciumFields, message: string): never => {
    throw new FieldProblem(field, message);
  };
  if (!Object.hasOwn(SIGNATURE_ALGORITHMS, f.algorithm)) fail('algorithm', `unknown algorithm '${f.algorithm}'`);
  if (!Object.hasOwn(ITEM_TYPES, f.itemType)) fail('itemType', `unknown item type '${f.itemType}'`);
  if (typeof f.certSerial !== 'string' || !SERIAL_PATTERN.test(f.certSerial)) {
    fail('certSerial', `must be lower-case hex of 1 to ${MAX_SERIAL_BYTES} bytes without a leading zero byte`);
  }
  if (typeof f.meterId !== 'string' || !METER_ID_PATTERN.test(f.meterId)) fail('meterId', `'${f.meterId}' is not a meter id`);
  checkInteger(f.ascendingRegister, MAX_REGISTER_MILLS, 'ascendingRegister');
  checkInteger(f.descendingRegister, MAX_REGISTER_MILLS, 'descendingRegister');
  checkInteger(f.postage, MAX_POSTAGE_MILLS, 'postage');
  checkInteger(f.sequence, MAX_SEQUENCE, 'sequence');
  checkInteger(f.rateTableId, 255, 'rateTableId');
  checkInteger(f.rateTableVersion, 255, 'rateTableVersion');
  if (!isCalendarDate(f.dateOfMailing)) fail('dateOfMailing', `'${f.dateOfMailing}' is not a date YYYY-MM-DD in 2000-2099`);
  if (typeof f.originZip !== 'string' || !/^\d{5}$/.test(f.originZip)) fail('originZip', 'must be 5 digits');
  if (typeof f.destinationZip !== 'string' || !/^(\d{5}|\d{9}|\d{11})?$/.test(f.destinationZip)) {
    fail('destinationZip', 'must be 5, 9 or 11 digits (or empty for items other than postage)');
  }
  if (f.itemType === 'postage' && f.destinationZip === '') fail('destinationZip', 'is required for postage');
  if (typeof f.rateCategory !== 'string' || !RATE_CATEGORY_PATTERN.test(f.rateCategory)) fail('rateCategory', 'must be 1 to 4 of A-Z 0-9');
  if (typeof f.softwareId !== 'string' || !SOFTWARE_ID_PATTERN.test(f.softwareId)) fail('softwareId', 'must be 1 to 6 of A-Z 0-9 . -');
}

function checkInteger(v: number, max: number, field: keyof IndiciumFields): void {
  if (!Number.isSafeInteger(v) || v < 0 || v > max) throw new FieldProblem(field, `must be an integer in 0..${max}, got ${v}`);
}

/** True for 'YYYY-MM-DD' naming a real day of the years 2000 to 2099. */
export function isCalendarDate(s: string): boolean {
  const m = typeof s === 'string' ? DATE_PATTERN.exec(s) : null;
  if (!m) return false;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (y < 2000 || y > 2099) return false;
  const t = new Date(Date.UTC(y, mo - 1, d));
  return t.getUTCFullYear() === y && t.getUTCMonth() === mo - 1 && t.getUTCDate() === d;
}
