import { createHash } from 'node:crypto';
import { vbiError } from '@vbi/core/errors';
import { HsmModule } from '../hsm/hsm-module';
import { encodeTlv, decodeTlv, u64, readU64, u8, readU8, str, readStr, TlvError } from '@vbi/core/psd/tlv';

/**
 * A checkpoint record: the record of one transaction that changed a PSD package (WO 01/29778,
 * "checkpoint concept"), MAC'd with the package MAC key. The module keeps the newest N in its
 * ring (token objects); the database keeps the newest in the module table. Equality is byte
 * equality of the encoded record.
 *
 *   "VBIC" | version u8 | TLV fields | macLen u8 | MAC     (docs/checkpoint.md)
 */
export const CHECKPOINT_MAGIC = Buffer.from('VBIC', 'ascii');
/**
 * 2: adds the meter's map slot and the meter map (epoch, root) after the transaction
 * (docs/checkpoint.md). Version 1 records (before the meter map) are refused.
 */
export const CHECKPOINT_FORMAT_VERSION = 2;

/** Transaction types as persisted in checkpoints and journal rows. Never renumber. */
export const TRANSACTION_TYPES = {
  'meter-create': 1,
  pvd: 2,
  indicium: 3,
  refund: 4,
  withdraw: 5,
  correction: 6,
  registration: 7,
  'key-renewal': 8,
  'meter-certify': 9,
  'meter-assign': 10,
  suspend: 11,
  /** An operational request that changed only the challenge (balance, history, print authorisation). */
  inquiry: 12,
  /** Session open or close. */
  session: 13,
  /** Officer reinstatement: the module accepts the database's state (docs/checkpoint.md); no meter. */
  reinstate: 14,
  /** A suspended meter made active again by an operator. */
  reactivate: 15,
  /** The mailer's HMK and password replaced (docs/protocol.md 7). */
  rekey: 16,
  /** The licensing authority's licence recorded in the package (docs/licensing.md). */
  license: 17,
  /** An operator revoked the meter's licence: it prints nothing more. */
  'revoke-licence': 18,
  /** Stock bought from the post entered in the vendor's master PSD (packages/server/src/module/commands/master-psd.ts). */
  'pool-purchase': 19,
  /** The master PSD's side of a meter's PVD or refund: the record after the meter's, in the same transaction. */
  'pool-transfer': 20,
} as const;
export type TransactionType = keyof typeof TRANSACTION_TYPES;
const TYPE_BY_CODE = new Map<number, TransactionType>(
  (Object.entries(TRANSACTION_TYPES) as Array<[TransactionType, number]>).map(([k, v]) => [v, k]),
);

export interface ModuleTotals {
  /** Total value downloaded into meters by this module ("reset"), mills. */
  reset: number;
  /** Total value printed (indicia) by this module, mills. */
  printed: number;
  /** Total value refunded by this module, mills. */
  refunded: number;
}

export interface Checkpoint {
  moduleSerial: string;
  /** Position in this module's sequence: 1, 2, 3, ... never reused. */
  seq: number;
  meterId: string;
  type: TransactionType;
  amount: number;
  ascendingRegister: number;
  descendingRegister: number;
  /** Time stamp, ms since epoch (record replay detection). */
  time: number;
  totals: ModuleTotals;
  /** SHA-256 of the sealed package the transaction produced. */
  packageDigest: Buffer;
  /** SHA-256 of the previous checkpoint record of this module; zeros for the first. */
  prevDigest: Buffer;
  /** The meter's slot in the meter map (packages/server/src/module/meter-map.ts). */
  slot: number;
  /** Meter map epoch after this transaction: +1 for every transaction of the map, over all modules. */
  mapEpoch: number;
  /** Meter map root after this transaction. */
  mapRoot: Buffer;
}

const T = {
  moduleSerial: 1, seq: 2, meterId: 3, type: 4, amount: 5, ar: 6, dr: 7, time: 8,
  totalReset: 9, totalPrinted: 10, totalRefunded: 11, packageDigest: 12, prevDigest: 13,
  slot: 14, mapEpoch: 15, mapRoot: 16,
} as const;

export const ZERO_DIGEST = Buffer.alloc(32);

export function digestOf(b: Buffer): Buffer {
  return createHash('sha256').update(b).digest();
}

function body(c: Checkpoint): Buffer {
  if (c.packageDigest.length !== 32 || c.prevDigest.length !== 32 || c.mapRoot.length !== 32) throw new TlvError('digests must be 32 bytes');
  const tlv = encodeTlv([
    [T.moduleSerial, str(c.moduleSerial)],
    [T.seq, u64(c.seq)],
    [T.meterId, str(c.meterId)],
    [T.type, u8(TRANSACTION_TYPES[c.type])],
    [T.amount, u64(c.amount)],
    [T.ar, u64(c.ascendingRegister)],
    [T.dr, u64(c.descendingRegister)],
    [T.time, u64(c.time)],
    [T.totalReset, u64(c.totals.reset)],
    [T.totalPrinted, u64(c.totals.printed)],
    [T.totalRefunded, u64(c.totals.refunded)],
    [T.packageDigest, c.packageDigest],
    [T.prevDigest, c.prevDigest],
    [T.slot, u64(c.slot)],
    [T.mapEpoch, u64(c.mapEpoch)],
    [T.mapRoot, c.mapRoot],
  ]);
  return Buffer.concat([CHECKPOINT_MAGIC, Buffer.from([CHECKPOINT_FORMAT_VERSION]), tlv]);
}

export async function encodeCheckpoint(hsm: HsmModule, c: Checkpoint): Promise<Buffer> {
  const b = body(c);
  const mac = await hsm.mac(b);
  return Buffer.concat([b, Buffer.from([mac.length]), mac]);
}

/** Decodes and verifies a checkpoint record; throws CHECKPOINT_MALFORMED or CHECKPOINT_MAC_INVALID. */
export async function decodeCheckpoint(hsm: HsmModule, bytes: Buffer): Promise<Checkpoint> {
  const c = parseCheckpoint(bytes);
  const b = bytes.subarray(0, bytes.length - 1 - c.macLength);
  if (!(await hsm.verifyMac(b, bytes.subarray(bytes.length - c.macLength)))) {
    throw vbiError('CHECKPOINT_MAC_INVALID', `checkpoint seq ${c.record.seq} of ${c.record.moduleSerial} fails its MAC`);
  }
  return c.record;
}

/** Decodes without verifying the MAC (for display and audit of records already verified). */
export function parseCheckpoint(bytes: Buffer): { record: Checkpoint; macLength: number } {
  const bad = (why: string) => vbiError('CHECKPOINT_MALFORMED', `checkpoint: ${why}`);
  if (bytes.length < 7 || !bytes.subarray(0, 4).equals(CHECKPOINT_MAGIC)) throw bad('bad magic');
  if (bytes[4] === 1) throw bad('format version 1 (written before the meter map): reset the dev tokens and database, or reinstate the module (docs/checkpoint.md)');
  if (bytes[4] !== CHECKPOINT_FORMAT_VERSION) throw bad(`format version ${bytes[4]}`);
  // the MAC length byte sits right before the MAC: find it by trying the suites' lengths
  const macLength = [16, 8].find((n) => bytes.length > 5 + n + 1 && bytes[bytes.length - 1 - n] === n);
  if (macLength === undefined) throw bad('no MAC');
  try {
    const f = decodeTlv(bytes.subarray(5, bytes.length - 1 - macLength), Object.values(T));
    const g = (t: number) => f.get(t) as Buffer;
    const typeCode = readU8(g(T.type), 'type');
    const type = TYPE_BY_CODE.get(typeCode);
    if (!type) throw new TlvError(`unknown transaction type ${typeCode}`);
    const digest = (t: number, what: string) => {
      if (g(t).length !== 32) throw new TlvError(`${what} must be 32 bytes`);
      return Buffer.from(g(t));
    };
    return {
      macLength,
      record: {
        moduleSerial: readStr(g(T.moduleSerial), 'module serial', /^[\x21-\x7e]{1,32}$/),
        seq: readU64(g(T.seq), 'seq'),
        meterId: readStr(g(T.meterId), 'meter id', /^[A-Z0-9-]{0,32}$/),
        type,
        amount: readU64(g(T.amount), 'amount'),
        ascendingRegister: readU64(g(T.ar), 'AR'),
        descendingRegister: readU64(g(T.dr), 'DR'),
        time: readU64(g(T.time), 'time'),
        totals: {
          reset: readU64(g(T.totalReset), 'total reset'),
          printed: readU64(g(T.totalPrinted), 'total printed'),
          refunded: readU64(g(T.totalRefunded), 'total refunded'),
        },
        packageDigest: digest(T.packageDigest, 'package digest'),
        prevDigest: digest(T.prevDigest, 'previous digest'),
        slot: readU64(g(T.slot), 'slot'),
        mapEpoch: readU64(g(T.mapEpoch), 'map epoch'),
        mapRoot: digest(T.mapRoot, 'map root'),
      },
    };
  } catch (e) {
    if (e instanceof TlvError) throw bad(e.message);
    throw e;
  }
}

/** A JSON-friendly view for audit records, status output and logs. */
export function checkpointView(c: Checkpoint): Record<string, unknown> {
  return {
    moduleSerial: c.moduleSerial, seq: c.seq, meterId: c.meterId, type: c.type, amount: c.amount,
    ascendingRegister: c.ascendingRegister, descendingRegister: c.descendingRegister,
    time: new Date(c.time).toISOString(), totals: c.totals,
    packageDigest: c.packageDigest.toString('hex'), prevDigest: c.prevDigest.toString('hex'),
    slot: c.slot, mapEpoch: c.mapEpoch, mapRoot: c.mapRoot.toString('hex'),
  };
}
