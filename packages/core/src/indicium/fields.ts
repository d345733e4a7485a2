import type { IndiciumKeyAlgorithm } from './key-algorithm';

/**
 * The fields of one indicium (the signed evidence of payment) as the service and verifiers see
 * them. The byte layout is in ./layout.ts and docs/indicium.md. Money is integer mills.
 */
export interface IndiciumFields {
  /** Signature algorithm of the meter's indicium key; fixes the signature length. */
  algorithm: IndiciumKeyAlgorithm;
  /** What the indicium pays for: the same structure serves every value-bearing item. */
  itemType: ItemType;
  /**
   * Serial of the indicium key certificate: lower-case hex of the unsigned serial number,
   * 1 to 20 bytes, no leading zero byte (see canonicalSerialHex in ./serial.ts).
   */
  certSerial: string;
  /** Device (meter) ID, as in the PSD package: [A-Z0-9][A-Z0-9-]{0,31}. */
  meterId: string;
  /** Ascending register after this item: postage used, mills. */
  ascendingRegister: number;
  /** Descending register after this item: postage available, mills. */
  descendingRegister: number;
  /** Value of this item, mills. */
  postage: number;
  /** Date of mailing, 'YYYY-MM-DD' (a calendar date, year 2000 to 2099). */
  dateOfMailing: string;
  /** Originating (licensing) ZIP code: 5 digits. */
  originZip: string;
  /**
   * Destination ZIP: 5 (ZIP), 9 (ZIP+4) or 11 (ZIP+4+delivery point) digits; required for
   * postage, may be '' for tickets, coupons and vouchers.
   */
  destinationZip: string;
  /** Rate category / mail class code of the rate table: 1 to 4 of [A-Z0-9] (e.g. 'FCL'). */
  rateCategory: string;
  /** Software ID of the signing service: 1 to 6 of [A-Z0-9.-], starting with a letter or digit. */
  softwareId: string;
  /** Per-meter sequence (piece count) of this item, 0 to 4294967295. */
  sequence: number;
  /** Rate table that priced the item: id and version, one byte each. */
  rateTableId: number;
  rateTableVersion: number;
}

/**
 * Item type codes. Persisted in every printed indicium: never renumber, only append.
 */
export const ITEM_TYPES = { postage: 1, ticket: 2, coupon: 3, voucher: 4 } as const;
export type ItemType = keyof typeof ITEM_TYPES;

/**
 * Signature algorithm IDs and signature lengths. Persisted in every printed indicium: never
 * renumber, only append. 1: ECDSA P-256 over SHA-256, raw r||s (IEEE P1363). 2: RSA-2048
 * PKCS#1 v1.5 with SHA-256 (the HSM's CKM_SHA256_RSA_PKCS).
 */
export const SIGNATURE_ALGORITHMS: Record<IndiciumKeyAlgorithm, { id: number; signatureLength: number }> = {
  'ec-p256': { id: 1, signatureLength: 64 },
  'rsa-2048': { id: 2, signatureLength: 256 },
};

/** Largest register value: u48, 281,474,976,710,655 mills (about 281 billion currency units). */
export const MAX_REGISTER_MILLS = 2 ** 48 - 1;
/** Largest item value: u32, 4,294,967,295 mills (about 4.29 million currency units). */
export const MAX_POSTAGE_MILLS = 2 ** 32 - 1;
/** Largest per-meter sequence number: u32. */
export const MAX_SEQUENCE = 2 ** 32 - 1;
/** Certificate serials: RFC 5280 allows at most 20 octets. */
export const MAX_SERIAL_BYTES = 20;
/** Meter IDs: as METER_ID_PATTERN in packages/core/src/psd/psd-package.ts. */
export const MAX_METER_ID_BYTES = 32;
