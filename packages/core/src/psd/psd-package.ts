import type { IndiciumKeyAlgorithm } from '../indicium/key-algorithm';
import { encodeTlv, decodeTlv, u64, readU64, u8, readU8, str, readStr, TlvError } from './tlv';

/**
 * The PSD package: everything a Postal Security Device would hold for one meter (WO 01/29778,
 * "PSD package"; the secure on-line VBI system claims, claim 38). This module is the in-memory model and the canonical
 * encoding of its two sections; sealing (encryption + MAC) is in packages/server/src/module/package-seal.ts
 * and the byte layout is documented in docs/psd-package.md. Tags are persisted: never renumber.
 */
export const OPERATIONAL_STATES = ['unassigned', 'active', 'suspended', 'closed'] as const;
export type OperationalState = (typeof OPERATIONAL_STATES)[number];

/**
 * The meter's licence from the postal licensing authority (CMLS; docs/licensing.md): a meter
 * prints only while 'licensed'. Persisted as the index (tag 15): never reorder.
 */
export const LICENCE_STATES = ['none', 'licensed', 'revoked'] as const;
export type LicenceState = (typeof LICENCE_STATES)[number];

export interface PsdPublic {
  meterId: string;
  /** Record update counter: +1 on every seal (and per item of a print request), checked for freshness (WO 98/57304). */
  recordCounter: number;
  /**
   * Piece counter: the number of indicia this meter has printed (each item of a print request,
   * each correction). The newest indicium's `sequence` (its piece number) is this value; the
   * next one gets +1. Never goes down, never reused.
   */
  pieceCounter: number;
  state: OperationalState;
  /** Ascending register: postage used, mills. */
  ascendingRegister: number;
  /** Descending register: postage available, mills. */
  descendingRegister: number;
  maxDescendingRegister: number;
  /** Total refunded from this meter, mills. */
  refundRegister: number;
  licensingZip: string;
  /** Serial of the indicium key certificate (hex); empty until MeterGen certifies the key. */
  indiciumCertSerial: string;
  indiciumKeyAlgorithm: IndiciumKeyAlgorithm | null;
  /** Expiry of the indicium key and of the user secrets (HMK), ms since epoch; 0 = none. */
  indiciumKeyExpiry: number;
  userSecretsExpiry: number;
  /** Time of the last transaction that changed the package, ms since epoch; 0 = never. */
  lastTransactionTime: number;
  /**
   * The licence (docs/licensing.md). A package sealed before licensing existed has no tag 15 and
   * decodes as 'licensed' (grandfathered: a meter already printing keeps printing).
   */
  licence: LicenceState;
  /** The authority's licence number; '' when none was given (or the package predates licensing). */
  licenceId: string;
}

export interface PsdSecrets {
  /** Indicium private key wrapped under the package KEK (RFC 5649); empty until MeterGen. */
  wrappedIndiciumKey: Buffer;
  /** The per-meter key for the user secrets, wrapped under the package KEK. */
  wrappedUserSecretsKey: Buffer;
  /** User secrets (password verifier, HMK) protected under the user-secrets key; empty until registration. */
  userSecrets: Buffer;
  /** The last challenge the module issued to the client (operational state, WO 01/29778 FIG. 7). */
  lastChallenge: Buffer;
  /** Digests of earlier passphrases, so that a passphrase is not reused (32 bytes each). */
  passphraseHistory: Buffer[];
}

export interface PsdPackage extends PsdPublic {
  secrets: PsdSecrets;
}

export const PUBLIC_TAGS = {
  meterId: 1, recordCounter: 2, state: 3, ascendingRegister: 4, descendingRegister: 5, maxDescendingRegister: 6,
  refundRegister: 7, licensingZip: 8, indiciumCertSerial: 9, indiciumKeyAlgorithm: 10, indiciumKeyExpiry: 11,
  userSecretsExpiry: 12, lastTransactionTime: 13, pieceCounter: 14,
  licence: 15, licenceId: 16,
} as const;

/**
 * Public tags a package sealed by an earlier release may lack (docs/psd-package.md). Every
 * release writes them all.
 *  - pieceCounter (14): a package without it decodes with the piece counter equal to its record
 *    counter. Before tag 14 every piece was numbered with the record counter (+1 per seal, and
 *    per item of a print request), so every number the meter ever printed is at most its record
 *    counter: counting on from there never reuses a piece number.
 *  - licence and licenceId (15, 16): together or not at all; a package without them was sealed
 *    before licensing and decodes as licensed (grandfathered), with no licence id.
 */
const LICENCE_TAGS: readonly number[] = [PUBLIC_TAGS.licence, PUBLIC_TAGS.licenceId];
const OPTIONAL_PUBLIC_TAGS: readonly number[] = [PUBLIC_TAGS.pieceCounter, ...LICENCE_TAGS];
const REQUIRED_PUBLIC_TAGS: readonly number[] = Object.values(PUBLIC_TAGS).filter((tag) => !OPTIONAL_PUBLIC_TAGS.includes(tag));

export const SECRET_TAGS = {
  wrappedIndiciumKey: 1, wrappedUserSecretsKey: 2, userSecrets: 3, lastChallenge: 4, passphraseHistory: 5,
} as const;

const KEY_ALGS: Array<IndiciumKeyAlgorithm | null> = [null, 'ec-p256', 'rsa-2048'];
export const METER_ID_PATTERN = /^[A-Z0-9][A-Z0-9-]{0,31}$/;
const ZIP_PATTERN = /^(\d{5})?$/;
const SERIAL_PATTERN = /^([0-9a-f]{2}){0,32}$/;
const DIGEST_BYTES = 32;
/** A licence number as the authority gives it: printable, no spaces, at most 64 characters; '' for none. */
export const LICENCE_ID_PATTERN = /^([A-Za-z0-9][A-Za-z0-9._:/-]{0,63})?$/;

export function encodePublic(p: PsdPublic): Buffer {
  const t = PUBLIC_TAGS;
  const alg = KEY_ALGS.indexOf(p.indiciumKeyAlgorithm);
  if (!METER_ID_PATTERN.test(p.meterId)) throw new TlvError(`meter id '${p.meterId}' is not valid`);
  if (!ZIP_PATTERN.test(p.licensingZip)) throw new TlvError('licensing ZIP must be 5 digits or empty');
  if (!SERIAL_PATTERN.test(p.indiciumCertSerial)) throw new TlvError('certificate serial must be lower-case hex');
  const licence = LICENCE_STATES.indexOf(p.licence);
  if (licence < 0) throw new TlvError(`unknown licence state '${String(p.licence)}'`);
  if (!LICENCE_ID_PATTERN.test(p.licenceId)) throw new TlvError('licence id must be 1 to 64 printable characters without spaces, or empty');
  // every package sealed from now on carries its licence explicitly (tags 15 and 16)
  return encodeTlv([
    [t.meterId, str(p.meterId)],
    [t.recordCounter, u64(p.recordCounter)],
    [t.state, u8(OPERATIONAL_STATES.indexOf(p.state))],
    [t.ascendingRegister, u64(p.ascendingRegister)],
    [t.descendingRegister, u64(p.descendingRegister)],
    [t.maxDescendingRegister, u64(p.maxDescendingRegister)],
    [t.refundRegister, u64(p.refundRegister)],
    [t.licensingZip, str(p.licensingZip)],
    [t.indiciumCertSerial, str(p.indiciumCertSerial)],
    [t.indiciumKeyAlgorithm, u8(alg)],
    [t.indiciumKeyExpiry, u64(p.indiciumKeyExpiry)],
    [t.userSecretsExpiry, u64(p.userSecretsExpiry)],
    [t.lastTransactionTime, u64(p.lastTransactionTime)],
    [t.pieceCounter, u64(p.pieceCounter)],
    [t.licence, u8(licence)],
    [t.licenceId, str(p.licenceId)],
  ]);
}

export function decodePublic(buf: Buffer): PsdPublic {
  const t = PUBLIC_TAGS;
  const f = decodeTlv(buf, REQUIRED_PUBLIC_TAGS, OPTIONAL_PUBLIC_TAGS);
  const get = (tag: number) => f.get(tag) as Buffer;
  const recordCounter = readU64(get(t.recordCounter), 'record counter');
  const piece = f.get(t.pieceCounter);
  // both licence tags or neither (a package sealed before licensing): one encoding per package
  const licenceTags = LICENCE_TAGS.filter((tag) => f.has(tag)).length;
  if (licenceTags === 1) throw new TlvError('licence state and licence id come together');
  const licenceIx = licenceTags ? readU8(get(t.licence), 'licence') : LICENCE_STATES.indexOf('licensed');
  if (licenceIx >= LICENCE_STATES.length) throw new TlvError('unknown licence state');
  const stateIx = readU8(get(t.state), 'state');
  const algIx = readU8(get(t.indiciumKeyAlgorithm), 'indicium key algorithm');
  if (stateIx >= OPERATIONAL_STATES.length) throw new TlvError('unknown operational state');
  if (algIx >= KEY_ALGS.length) throw new TlvError('unknown indicium key algorithm');
  return {
    meterId: readStr(get(t.meterId), 'meter id', METER_ID_PATTERN),
    recordCounter,
    pieceCounter: piece ? readU64(piece, 'piece counter') : recordCounter,
    state: OPERATIONAL_STATES[stateIx],
    ascendingRegister: readU64(get(t.ascendingRegister), 'AR'),
    descendingRegister: readU64(get(t.descendingRegister), 'DR'),
    maxDescendingRegister: readU64(get(t.maxDescendingRegister), 'max DR'),
    refundRegister: readU64(get(t.refundRegister), 'refund register'),
    licensingZip: readStr(get(t.licensingZip), 'licensing ZIP', ZIP_PATTERN),
    indiciumCertSerial: readStr(get(t.indiciumCertSerial), 'certificate serial', SERIAL_PATTERN),
    indiciumKeyAlgorithm: KEY_ALGS[algIx],
    indiciumKeyExpiry: readU64(get(t.indiciumKeyExpiry), 'indicium key expiry'),
    userSecretsExpiry: readU64(get(t.userSecretsExpiry), 'user secrets expiry'),
    lastTransactionTime: readU64(get(t.lastTransactionTime), 'last transaction time'),
    licence: LICENCE_STATES[licenceIx],
    licenceId: licenceTags ? readStr(get(t.licenceId), 'licence id', LICENCE_ID_PATTERN) : '',
  };
}

export function encodeSecrets(s: PsdSecrets): Buffer {
  const t = SECRET_TAGS;
  for (const d of s.passphraseHistory) if (d.length !== DIGEST_BYTES) throw new TlvError('passphrase digest must be 32 bytes');
  return encodeTlv([
    [t.wrappedIndiciumKey, s.wrappedIndiciumKey],
    [t.wrappedUserSecretsKey, s.wrappedUserSecretsKey],
    [t.userSecrets, s.userSecrets],
    [t.lastChallenge, s.lastChallenge],
    [t.passphraseHistory, Buffer.concat(s.passphraseHistory)],
  ]);
}

export function decodeSecrets(buf: Buffer): PsdSecrets {
  const t = SECRET_TAGS;
  const f = decodeTlv(buf, Object.values(t));
  const history = f.get(t.passphraseHistory) as Buffer;
  if (history.length % DIGEST_BYTES !== 0) throw new TlvError('passphrase history is not a list of digests');
  const list: Buffer[] = [];
  for (let i = 0; i < history.length; i += DIGEST_BYTES) list.push(Buffer.from(history.subarray(i, i + DIGEST_BYTES)));
  const copy = (tag: number) => Buffer.from(f.get(tag) as Buffer);
  return {
    wrappedIndiciumKey: copy(t.wrappedIndiciumKey),
    wrappedUserSecretsKey: copy(t.wrappedUserSecretsKey),
    userSecrets: copy(t.userSecrets),
    lastChallenge: copy(t.lastChallenge),
    passphraseHistory: list,
  };
}

/** A new, unassigned package as MeterGen creates it (registers zero, no user secrets yet, no licence). */
export function newPackage(init: { meterId: string; maxDescendingRegister: number; licensingZip?: string }): PsdPackage {
  return {
    meterId: init.meterId,
    recordCounter: 0,
    pieceCounter: 0,
    state: 'unassigned',
    ascendingRegister: 0,
    descendingRegister: 0,
    maxDescendingRegister: init.maxDescendingRegister,
    refundRegister: 0,
    licensingZip: init.licensingZip ?? '',
    indiciumCertSerial: '',
    indiciumKeyAlgorithm: null,
    indiciumKeyExpiry: 0,
    userSecretsExpiry: 0,
    lastTransactionTime: 0,
    licence: 'none',
    licenceId: '',
    secrets: {
      wrappedIndiciumKey: Buffer.alloc(0),
      wrappedUserSecretsKey: Buffer.alloc(0),
      userSecrets: Buffer.alloc(0),
      lastChallenge: Buffer.alloc(0),
      passphraseHistory: [],
    },
  };
}
