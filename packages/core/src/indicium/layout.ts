import type { IndiciumKeyAlgorithm } from './key-algorithm';
import { vbiError } from '../errors';
import { decodeBcd, encodeBcd } from './bcd';
import { checkFields, FieldProblem } from './field-checks';
import { IndiciumFields, ITEM_TYPES, ItemType, MAX_METER_ID_BYTES, MAX_SERIAL_BYTES, SIGNATURE_ALGORITHMS } from './fields';

/**
 * The indicium byte layout, version 1 (modelled on USPS Information-Based Indicia). Every
 * printed indicium carries these bytes: changing an offset, a width, an enum value or the
 * byte order breaks every indicium already in the mail stream. A new layout gets a new
 * INDICIUM_VERSION and a new branch in decodeIndicium; version 1 stays readable.
 *
 *   off   size  field
 *   0     1     version (1)
 *   1     1     signature algorithm ID (fields.ts SIGNATURE_ALGORITHMS)
 *   2     1     item type (fields.ts ITEM_TYPES)
 *   3     1     L = certificate serial length, 1..20
 *   4     L     certificate serial, unsigned big-endian (as in the certificate)
 *   4+L   1     M = meter ID length, 1..32
 *   5+L   M     meter ID, ASCII
 *   t=5+L+M, then fixed fields:
 *   t+0   6     ascending register, u48 LE, mills
 *   t+6   6     descending register, u48 LE, mills
 *   t+12  4     postage, u32 LE, mills
 *   t+16  4     date of mailing, packed BCD YYYYMMDD
 *   t+20  3     originating ZIP, packed BCD, 5 digits + F
 *   t+23  6     destination ZIP+4+DP, packed BCD, 0/5/9/11 digits, F-filled
 *   t+29  4     rate category, ASCII, space-padded
 *   t+33  6     software ID, ASCII, space-padded
 *   t+39  4     sequence number, u32 LE
 *   t+43  1     rate table ID
 *   t+44  1     rate table version
 *   t+45  S     signature over bytes [0, t+45): 64 (EC P-256 r||s) or 256 (RSA-2048)
 */
export const INDICIUM_VERSION = 1;
/** Bytes of the signed data that do not depend on L and M. */
export const FIXED_DATA_BYTES = 50;

const TAIL = {
  ascendingRegister: 0, descendingRegister: 6, postage: 12, dateOfMailing: 16, originZip: 20, destinationZip: 23,
  rateCategory: 29, softwareId: 33, sequence: 39, rateTableId: 43, rateTableVersion: 44, end: 45,
} as const;
const RATE_CATEGORY_BYTES = 4;
const SOFTWARE_ID_BYTES = 6;

/** A decoded indicium: the fields, the exact signed bytes and the signature. */
export interface DecodedIndicium {
  version: number;
  fields: IndiciumFields;
  /** The signed bytes: everything before the signature. */
  data: Buffer;
  signature: Buffer;
}

/**
 * The bytes to sign for `fields`. Throws INDICIUM_FIELD_INVALID naming the first bad field.
 */
export function encodeIndiciumData(fields: IndiciumFields): Buffer {
  try {
    checkFields(fields);
  } catch (e) {
    if (e instanceof FieldProblem) throw vbiError('INDICIUM_FIELD_INVALID', e.message, { field: e.field });
    throw e;
  }
  const serial = Buffer.from(fields.certSerial, 'hex');
  const meterId = Buffer.from(fields.meterId, 'ascii');
  const tail = Buffer.alloc(TAIL.end);
  tail.writeUIntLE(fields.ascendingRegister, TAIL.ascendingRegister, 6);
  tail.writeUIntLE(fields.descendingRegister, TAIL.descendingRegister, 6);
  tail.writeUInt32LE(fields.postage, TAIL.postage);
  encodeBcd(fields.dateOfMailing.replace(/-/g, ''), 4).copy(tail, TAIL.dateOfMailing);
  encodeBcd(fields.originZip, 3).copy(tail, TAIL.originZip);
  encodeBcd(fields.destinationZip, 6).copy(tail, TAIL.destinationZip);
  tail.write(fields.rateCategory.padEnd(RATE_CATEGORY_BYTES, ' '), TAIL.rateCategory, 'ascii');
  tail.write(fields.softwareId.padEnd(SOFTWARE_ID_BYTES, ' '), TAIL.softwareId, 'ascii');
  tail.writeUInt32LE(fields.sequence, TAIL.sequence);
  tail.writeUInt8(fields.rateTableId, TAIL.rateTableId);
  tail.writeUInt8(fields.rateTableVersion, TAIL.rateTableVersion);
  return Buffer.concat([
    Buffer.from([INDICIUM_VERSION, SIGNATURE_ALGORITHMS[fields.algorithm].id, ITEM_TYPES[fields.itemType], serial.length]),
    serial,
    Buffer.from([meterId.length]),
    meterId,
    tail,
  ]);
}

/**
 * The printed indicium: data || signature. Checks that `data` decodes and that the signature
 * has the length its algorithm ID demands (INDICIUM_MALFORMED otherwise).
 */
export function assembleIndicium(data: Buffer, signature: Buffer): Buffer {
  const indicium = Buffer.concat([data, signature]);
  const decoded = decodeIndicium(indicium);
  if (decoded.data.length !== data.length) throw vbiError('INDICIUM_MALFORMED', 'signature length does not match the algorithm');
  return indicium;
}

/**
 * Decodes a printed indicium. Strict: the version and every enum must be known, lengths must
 * be exact (nothing missing, nothing trailing), digits and text must be well formed, and the
 * fields must pass the same checks as the encoder. Throws INDICIUM_MALFORMED with the field.
 */
export function decodeIndicium(bytes: Buffer): DecodedIndicium {
  try {
    return decodeV1(bytes);
  } catch (e) {
    if (e instanceof FieldProblem) throw vbiError('INDICIUM_MALFORMED', e.message, { field: e.field });
    throw e;
  }
}

function decodeV1(bytes: Buffer): DecodedIndicium {
  if (!Buffer.isBuffer(bytes) || bytes.length < 4) throw new FieldProblem('length', 'too short to be an indicium');
  if (bytes[0] !== INDICIUM_VERSION) throw new FieldProblem('version', `unsupported indicium version ${bytes[0]}`);
  const algorithm = lookup(SIGNATURE_ALGORITHMS, (a) => a.id === bytes[1]) as IndiciumKeyAlgorithm | undefined;
  if (!algorithm) throw new FieldProblem('algorithm', `unknown signature algorithm ID ${bytes[1]}`);
  const itemType = lookup(ITEM_TYPES, (id) => id === bytes[2]) as ItemType | undefined;
  if (!itemType) throw new FieldProblem('itemType', `unknown item type ${bytes[2]}`);

  const serialLength = bytes[3];
  if (serialLength < 1 || serialLength > MAX_SERIAL_BYTES) throw new FieldProblem('certSerial', `length ${serialLength} out of range`);
  const meterIdAt = 4 + serialLength;
  if (bytes.length <= meterIdAt) throw new FieldProblem('length', 'truncated before the meter ID');
  const meterIdLength = bytes[meterIdAt];
  if (meterIdLength < 1 || meterIdLength > MAX_METER_ID_BYTES) throw new FieldProblem('meterId', `length ${meterIdLength} out of range`);
  const dataLength = FIXED_DATA_BYTES + serialLength + meterIdLength;
  const expected = dataLength + SIGNATURE_ALGORITHMS[algorithm].signatureLength;
  if (bytes.length !== expected) throw new FieldProblem('length', `expected ${expected} bytes, got ${bytes.length}`);

  const t = meterIdAt + 1 + meterIdLength;
  const at = (field: keyof typeof TAIL, size: number): Buffer => bytes.subarray(t + TAIL[field], t + TAIL[field] + size);
  const bcd = (field: keyof IndiciumFields & keyof typeof TAIL, size: number, lengths: number[]): string => {
    try {
      return decodeBcd(at(field, size), lengths);
    } catch (e) {
      throw new FieldProblem(field, (e as Error).message);
    }
  };
  const date = bcd('dateOfMailing', 4, [8]);
  const fields: IndiciumFields = {
    algorithm,
    itemType,
    certSerial: bytes.subarray(4, meterIdAt).toString('hex'),
    meterId: ascii(bytes.subarray(meterIdAt + 1, t), 'meterId'),
    ascendingRegister: bytes.readUIntLE(t + TAIL.ascendingRegister, 6),
    descendingRegister: bytes.readUIntLE(t + TAIL.descendingRegister, 6),
    postage: bytes.readUInt32LE(t + TAIL.postage),
    dateOfMailing: `${date.slice(0, 4)}-${date.slice(4, 6)}-${date.slice(6)}`,
    originZip: bcd('originZip', 3, [5]),
    destinationZip: bcd('destinationZip', 6, [0, 5, 9, 11]),
    rateCategory: padded(at('rateCategory', RATE_CATEGORY_BYTES), 'rateCategory'),
    softwareId: padded(at('softwareId', SOFTWARE_ID_BYTES), 'softwareId'),
    sequence: bytes.readUInt32LE(t + TAIL.sequence),
    rateTableId: bytes[t + TAIL.rateTableId],
    rateTableVersion: bytes[t + TAIL.rateTableVersion],
  };
  checkFields(fields);
  return {
    version: INDICIUM_VERSION,
    fields,
    data: Buffer.from(bytes.subarray(0, dataLength)),
    signature: Buffer.from(bytes.subarray(dataLength)),
  };
}

function lookup<T>(table: Record<string, T>, match: (v: T) => boolean): string | undefined {
  return Object.keys(table).find((k) => match(table[k]));
}

/** Printable ASCII only: bytes >= 0x80 would not survive a latin1/utf8 round trip. */
function ascii(b: Buffer, field: keyof IndiciumFields): string {
  if (b.some((c) => c < 0x20 || c > 0x7e)) throw new FieldProblem(field, 'is not printable ASCII');
  return b.toString('ascii');
}

/** A value then spaces only; checkFields then applies the field's pattern. */
function padded(b: Buffer, field: keyof IndiciumFields): string {
  const s = ascii(b, field);
  const value = s.replace(/ +$/, '');
  if (value.includes(' ')) throw new FieldProblem(field, 'contains a space');
  return value;
}
