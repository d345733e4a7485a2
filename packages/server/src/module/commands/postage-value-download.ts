import { vbiError } from '@vbi/core/errors';
import { CommandOutcome } from '../psd-engine';
import { PsdPackage } from '@vbi/core/psd/psd-package';
import { existing, requireActive, registersOf, Registers } from './guards';

/**
 * PVD: value from the vendor's pool into the meter's DR, never past the meter's maximum DR. A
 * meter whose licence is still pending may buy postage (it prints once licensed); a revoked one
 * takes none (METER_NOT_LICENSED; docs/licensing.md).
 */
export function postageValueDownload(req: { amount: number }) {
  return async (opened: PsdPackage | null): Promise<CommandOutcome<Registers>> => {
    const pkg = existing(opened);
    requireActive(pkg);
    if (pkg.licence === 'revoked') throw vbiError('METER_NOT_LICENSED', `meter ${pkg.meterId}: its licence was revoked; it takes no postage`, { licence: pkg.licence });
    if (pkg.descendingRegister + req.amount > pkg.maxDescendingRegister) {
      throw vbiError('MAX_DR_EXCEEDED', `meter ${pkg.meterId}: DR ${pkg.descendingRegister} + ${req.amount} > max ${pkg.maxDescendingRegister} mills`);
    }
    const next = { ...pkg, descendingRegister: pkg.descendingRegister + req.amount };
    return { package: next, type: 'pvd', amount: req.amount, totals: { reset: req.amount }, result: registersOf(next) };
  };
}
