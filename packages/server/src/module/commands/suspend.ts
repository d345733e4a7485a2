import { vbiError } from '@vbi/core/errors';
import { CommandOutcome } from '../psd-engine';
import { PsdPackage } from '@vbi/core/psd/psd-package';
import { existing, registersOf, Registers } from './guards';

/**
 * Suspends a meter (WO 99/41690: on fraud — the same evidence of payment seen twice — the server
 * disables the descending register and reports): no value moves until an operator reactivates it.
 */
export function suspendMeter() {
  return async (opened: PsdPackage | null): Promise<CommandOutcome<Registers>> => {
    const pkg = existing(opened);
    if (pkg.state === 'closed') throw vbiError('METER_CLOSED', `meter ${pkg.meterId} is closed`);
    const next: PsdPackage = { ...pkg, state: 'suspended' };
    return { package: next, type: 'suspend', amount: 0, result: registersOf(next) };
  };
}
