import { PsdPackage } from '@vbi/core/psd/psd-package';
import { existing, requireActive, requireFunds, requireLicensed, Registers } from './guards';
import { requireCertifiedKey } from './metergen-certify';
import { IndiciumFields, ItemType } from '@vbi/core/indicium/fields';
import { signEncoded } from '@vbi/core/indicium/sign';
import { encodeIndiciumData } from '@vbi/core/indicium/layout';
import type { KeyScope } from '../../hsm/hsm-module';

/** What the mailer asks for: everything in the indicium that the meter does not supply itself. */
export interface Mailpiece {
  itemType?: ItemType;
  /** 5, 9 or 11 digits; may be '' for items other than postage. */
  destinationZip: string;
  /** Rate category / mail class code of the rate table (e.g. 'FCL'). */
  rateCategory: string;
  rateTableId: number;
  rateTableVersion: number;
  /** 'YYYY-MM-DD'; default: the command's date (UTC). */
  dateOfMailing?: string;
}

/** Software ID printed in every indicium (docs/indicium.md). */
export const SOFTWARE_ID = 'VBI1';

export interface PrintedIndicium extends Registers {
  fields: IndiciumFields;
  /** The signed bytes, the signature, and both together as the DataMatrix carries them. */
  data: Buffer;
  signature: Buffer;
  indicium: Buffer;
  /** SHA-256 of the signed data: the key of duplicate detection. */
  digest: Buffer;
  /** The piece number: fields.sequence, the package's piece counter after this indicium. */
  sequence: number;
  postage: number;
}

/** An indicium decided but not yet signed: the package after the debit, the fields and their encoding. */
export interface PlannedIndicium {
  /** The package after the debit, its piece counter moved on to `sequence` (the record counter is not touched). */
  next: PsdPackage;
  fields: IndiciumFields;
  /** encodeIndiciumData(fields): the bytes to sign. */
  data: Buffer;
  /** The piece number printed in the indicium (fields.sequence): the piece counter + 1. */
  sequence: number;
  /**
   * The record counter value this indicium's transaction takes (+1): the `sequence` of its
   * receipt. Receipts, the journal and resync count records, not pieces (docs/protocol.md).
   */
  recordSequence: number;
}

/**
 * The register part of CreateIndicium, no token call: the meter must be active and licensed
 * (docs/licensing.md) with a certified key and the funds; DR is debited and AR credited, the
 * piece counter counts this piece; the fields carry the registers after the debit and the piece
 * number (the piece counter after it). The fields are encoded here, so their checks
 * (INDICIUM_FIELD_INVALID) run before anything is debited or signed.
 */
export function planIndicium(opened: PsdPackage | null, req: { postage: number; mailpiece: Mailpiece }, now: number): PlannedIndicium {
  const pkg = existing(opened);
  requireActive(pkg);
  requireLicensed(pkg);
  requireCertifiedKey(pkg, now);
  requireFunds(pkg, req.postage);
  const next: PsdPackage = {
    ...pkg,
    descendingRegister: pkg.descendingRegister - req.postage,
    ascendingRegister: pkg.ascendingRegister + req.postage,
    pieceCounter: pkg.pieceCounter + 1,
  };
  const sequence = next.pieceCounter;
  const fields: IndiciumFields = {
    algorithm: pkg.indiciumKeyAlgorithm ?? 'ec-p256',
    itemType: req.mailpiece.itemType ?? 'postage',
    certSerial: pkg.indiciumCertSerial,
    meterId: pkg.meterId,
    ascendingRegister: next.ascendingRegister,
    descendingRegister: next.descendingRegister,
    postage: req.postage,
    dateOfMailing: req.mailpiece.dateOfMailing ?? new Date(now).toISOString().slice(0, 10),
    originZip: pkg.licensingZip,
    destinationZip: req.mailpiece.destinationZip,
    rateCategory: req.mailpiece.rateCategory,
    softwareId: SOFTWARE_ID,
    sequence,
    rateTableId: req.mailpiece.rateTableId,
    rateTableVersion: req.mailpiece.rateTableVersion,
  };
  return { next, fields, data: encodeIndiciumData(fields), sequence, recordSequence: pkg.recordCounter + 1 };
}

/** Signs a planned indicium inside the module with the meter's indicium key (unwrapped by `keys`). */
export function signPlanned(plan: PlannedIndicium, wrappedKey: Buffer, keys: Pick<KeyScope, 'signWithWrappedKey'>) {
  return signEncoded({ fields: plan.fields, data: plan.data, sign: (data) => keys.signWithWrappedKey({ wrappedKey, algorithm: plan.fields.algorithm, data }) });
}
