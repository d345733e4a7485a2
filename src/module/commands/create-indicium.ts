import { CommandContext, CommandOutcome } from '../psd-engine';
import { PsdPackage } from '../../psd/psd-package';
import { existing, requireActive, requireFunds, registersOf, Registers } from './guards';
import { vbiError } from '../../errors';

/** What the indicium layout needs from the module to build the bytes it signs. */
export interface IndiciumContext {
  pkg: PsdPackage;
  /** Per-meter sequence number of this indicium: the package's record counter after the command. */
  sequence: number;
  postage: number;
  now: number;
}

/** Builds the signed bytes of an indicium (layout: src/indicium/, docs/indicium.md). */
export type IndiciumDataBuilder = (ctx: IndiciumContext) => Buffer;

export interface SignedIndicium extends Registers { data: Buffer; signature: Buffer; sequence: number; postage: number }

/**
 * CreateIndicium (and the correction indicium): debit DR, credit AR, and sign the indicium data
 * inside the module with the meter's indicium key, unwrapped into a session object only for the
 * signature. The registers in the signed data are those after the debit.
 */
export function createIndicium(req: { postage: number; build: IndiciumDataBuilder; type?: 'indicium' | 'correction' }) {
  return async (opened: PsdPackage | null, ctx: CommandContext): Promise<CommandOutcome<SignedIndicium>> => {
    const pkg = existing(opened);
    requireActive(pkg);
    requireFunds(pkg, req.postage);
    if (!pkg.indiciumKeyAlgorithm || pkg.secrets.wrappedIndiciumKey.length === 0) {
      throw vbiError('METER_NOT_ACTIVE', `meter ${pkg.meterId} has no indicium key`);
    }
    if (pkg.indiciumKeyExpiry !== 0 && pkg.indiciumKeyExpiry <= ctx.now) {
      throw vbiError('METER_NOT_ACTIVE', `meter ${pkg.meterId}: indicium key expired; renew it`);
    }
    const next: PsdPackage = {
      ...pkg,
      descendingRegister: pkg.descendingRegister - req.postage,
      ascendingRegister: pkg.ascendingRegister + req.postage,
    };
    const sequence = pkg.recordCounter + 1;
    const data = req.build({ pkg: next, sequence, postage: req.postage, now: ctx.now });
    const signature = await ctx.hsm.signWithWrappedKey({ wrappedKey: pkg.secrets.wrappedIndiciumKey, algorithm: pkg.indiciumKeyAlgorithm, data });
    return {
      package: next,
      type: req.type ?? 'indicium',
      amount: req.postage,
      totals: { printed: req.postage },
      result: { ...registersOf(next), data, signature, sequence, postage: req.postage },
    };
  };
}
