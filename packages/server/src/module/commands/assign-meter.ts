import { vbiError } from '@vbi/core/errors';
import { CommandContext, CommandOutcome } from '../psd-engine';
import { PsdPackage } from '@vbi/core/psd/psd-package';
import { existing } from './guards';
import { requireCertifiedKey } from './metergen-certify';

/**
 * Puts a certified MeterGen meter into service for an account (registration): only an
 * unassigned meter with a certified, unexpired indicium key can become active. It has no licence
 * yet (docs/licensing.md): a pool meter sealed before licensing existed decodes as licensed
 * (grandfathered) and loses that here; a revoked licence stays revoked.
 */
export function assignMeter(req: { licensingZip: string }) {
  return async (opened: PsdPackage | null, ctx: CommandContext): Promise<CommandOutcome<{ certSerial: string }>> => {
    const pkg = existing(opened);
    if (pkg.state !== 'unassigned') throw vbiError('BAD_REQUEST', `meter ${pkg.meterId} is ${pkg.state}, not unassigned`);
    requireCertifiedKey(pkg, ctx.now);
    return {
      package: { ...pkg, state: 'active', licensingZip: req.licensingZip, licence: pkg.licence === 'revoked' ? 'revoked' : 'none', licenceId: '' },
      type: 'meter-assign',
      amount: 0,
      result: { certSerial: pkg.indiciumCertSerial },
    };
  };
}
