import { vbiError } from '@vbi/core/errors';
import { CommandOutcome } from '../psd-engine';
import { LICENCE_ID_PATTERN, PsdPackage } from '@vbi/core/psd/psd-package';
import { existing, registersOf, Registers } from './guards';

export interface LicenceResult extends Registers { licence: PsdPackage['licence']; licenceId: string }

function resultOf(pkg: PsdPackage): LicenceResult {
  return { ...registersOf(pkg), licence: pkg.licence, licenceId: pkg.licenceId };
}

/**
 * The licensing authority approved the meter's licence request (docs/licensing.md): the package
 * records the licence and its number, and the meter may print. The licence is for the licensing
 * ZIP the request carried, which must be the one the meter prints as its origin. A revoked licence
 * is never granted again (the mailer registers a new meter); a closed meter takes no licence.
 */
export function licenseMeter(req: { licenceId: string; licensingZip: string }) {
  return async (opened: PsdPackage | null): Promise<CommandOutcome<LicenceResult>> => {
    const pkg = existing(opened);
    if (!LICENCE_ID_PATTERN.test(req.licenceId)) throw vbiError('BAD_REQUEST', 'licence id must be 1 to 64 printable characters without spaces, or empty');
    if (pkg.state === 'closed') throw vbiError('METER_CLOSED', `meter ${pkg.meterId} is closed`);
    if (pkg.state === 'unassigned') throw vbiError('BAD_REQUEST', `meter ${pkg.meterId} is not assigned to a mailer`);
    if (pkg.licence === 'revoked') throw vbiError('LICENCE_REVOKED', `the licence of meter ${pkg.meterId} was revoked: it is not licensed again`);
    if (pkg.licence === 'licensed') throw vbiError('ALREADY_LICENSED', `meter ${pkg.meterId} is already licensed${pkg.licenceId ? ` (${pkg.licenceId})` : ''}`);
    if (req.licensingZip !== pkg.licensingZip) {
      throw vbiError('BAD_REQUEST', `the licence is for licensing ZIP ${req.licensingZip}; meter ${pkg.meterId} prints ${pkg.licensingZip || 'none'}`);
    }
    const next: PsdPackage = { ...pkg, licence: 'licensed', licenceId: req.licenceId };
    return { package: next, type: 'license', amount: 0, result: resultOf(next) };
  };
}

/**
 * An operator revokes the meter's licence (docs/licensing.md): from the next command on it prints
 * nothing and takes no postage; refunds still work. Final: a revoked licence is not granted again.
 * A meter whose request is still pending can be revoked too (a later approval is then refused).
 */
export function revokeLicence() {
  return async (opened: PsdPackage | null): Promise<CommandOutcome<LicenceResult>> => {
    const pkg = existing(opened);
    if (pkg.state === 'closed') throw vbiError('METER_CLOSED', `meter ${pkg.meterId} is closed`);
    if (pkg.licence === 'revoked') throw vbiError('LICENCE_REVOKED', `the licence of meter ${pkg.meterId} is already revoked`);
    const next: PsdPackage = { ...pkg, licence: 'revoked' };
    return { package: next, type: 'revoke-licence', amount: 0, result: resultOf(next) };
  };
}
