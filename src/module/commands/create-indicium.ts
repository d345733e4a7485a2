import { CommandContext, CommandOutcome } from '../psd-engine';
import { PsdPackage } from '../../psd/psd-package';
import { existing, requireActive, requireFunds, registersOf, Registers } from './guards';
import { requireCertifiedKey } from './metergen-certify';
import { IndiciumFields, ItemType } from '../../indicium/fields';
import { signIndicium } from '../../indicium/sign';

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
  sequence: number;
  postage: number;
}

/**
 * CreateIndicium (and the correction indicium): debit DR, credit AR, and sign the indicium
 * (src/indicium/, docs/indicium.md) inside the module with the meter's certified indicium key,
 * unwrapped into a session object only for the signature. The registers in the signed data are
 * those after the debit; the sequence is the package's record counter after the command.
 */
export function createIndicium(req: { postage: number; mailpiece: Mailpiece; type?: 'indicium' | 'correction' }) {
  return async (opened: PsdPackage | null, ctx: CommandContext): Promise<CommandOutcome<PrintedIndicium>> => {
    const pkg = existing(opened);
    requireActive(pkg);
    requireCertifiedKey(pkg, ctx.now);
    requireFunds(pkg, req.postage);
    const next: PsdPackage = {
      ...pkg,
      descendingRegister: pkg.descendingRegister - req.postage,
      ascendingRegister: pkg.ascendingRegister + req.postage,
    };
    const sequence = pkg.recordCounter + 1;
    const algorithm = pkg.indiciumKeyAlgorithm ?? 'ec-p256';
    const fields: IndiciumFields = {
      algorithm,
      itemType: req.mailpiece.itemType ?? 'postage',
      certSerial: pkg.indiciumCertSerial,
      meterId: pkg.meterId,
      ascendingRegister: next.ascendingRegister,
      descendingRegister: next.descendingRegister,
      postage: req.postage,
      dateOfMailing: req.mailpiece.dateOfMailing ?? new Date(ctx.now).toISOString().slice(0, 10),
      originZip: pkg.licensingZip,
      destinationZip: req.mailpiece.destinationZip,
      rateCategory: req.mailpiece.rateCategory,
      softwareId: SOFTWARE_ID,
      sequence,
      rateTableId: req.mailpiece.rateTableId,
      rateTableVersion: req.mailpiece.rateTableVersion,
    };
    // Field checks run before anything is signed (INDICIUM_FIELD_INVALID changes nothing).
    const signed = await signIndicium({
      fields,
      sign: (data) => (ctx.keys ?? ctx.hsm).signWithWrappedKey({ wrappedKey: pkg.secrets.wrappedIndiciumKey, algorithm, data }),
    });
    return {
      package: next,
      type: req.type ?? 'indicium',
      amount: req.postage,
      totals: { printed: req.postage },
      result: { ...registersOf(next), ...signed, sequence, postage: req.postage },
    };
  };
}
