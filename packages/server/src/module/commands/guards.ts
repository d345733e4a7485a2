import { vbiError } from '@vbi/core/errors';
import { PsdPackage } from '@vbi/core/psd/psd-package';

/** The opened package of a command that needs an existing meter. */
export function existing(pkg: PsdPackage | null): PsdPackage {
  if (!pkg) throw new Error('command needs an existing package');
  return pkg;
}

/** Value-moving commands need an active meter. */
export function requireActive(pkg: PsdPackage): void {
  if (pkg.state === 'closed') throw vbiError('METER_CLOSED', `meter ${pkg.meterId} is closed`);
  if (pkg.state !== 'active') throw vbiError('METER_NOT_ACTIVE', `meter ${pkg.meterId} is ${pkg.state}`);
}

/**
 * Printing (indicia, corrections) needs the licence of the postal licensing authority
 * (docs/licensing.md): a meter whose licence is pending, was refused or was revoked signs nothing.
 */
export function requireLicensed(pkg: PsdPackage): void {
  if (pkg.licence === 'licensed') return;
  const why = pkg.licence === 'revoked' ? 'its licence was revoked' : 'it has no licence from the licensing authority (pending or refused)';
  throw vbiError('METER_NOT_LICENSED', `meter ${pkg.meterId} may not print: ${why}`, { licence: pkg.licence });
}

export function requireFunds(pkg: PsdPackage, amount: number): void {
  if (pkg.descendingRegister < amount) {
    throw vbiError('INSUFFICIENT_FUNDS', `meter ${pkg.meterId}: DR ${pkg.descendingRegister} mills < ${amount} mills`, {
      descendingRegister: pkg.descendingRegister,
      amount,
    });
  }
}

export interface Registers { ascendingRegister: number; descendingRegister: number; refundRegister: number }

export function registersOf(pkg: PsdPackage): Registers {
  return { ascendingRegister: pkg.ascendingRegister, descendingRegister: pkg.descendingRegister, refundRegister: pkg.refundRegister };
}
