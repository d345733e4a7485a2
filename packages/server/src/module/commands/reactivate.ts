import { vbiError } from '@vbi/core/errors';
import { CommandOutcome } from '../psd-engine';
import { PsdPackage } from '@vbi/core/psd/psd-package';
import { existing, registersOf, Registers } from './guards';

/**
 * Reactivates a suspended meter after an operator reviewed its fraud cases (docs/indicium.md,
 * "Sightings and fraud cases"): its descending register works again, nothing else changes.
 */
export function reactivateMeter() {
  return async (opened: PsdPackage | null): Promise<CommandOutcome<Registers>> => {
    const pkg = existing(opened);
    if (pkg.state !== 'suspended') throw vbiError('METER_NOT_SUSPENDED', `meter ${pkg.meterId} is ${pkg.state}, not suspended`);
    const next: PsdPackage = { ...pkg, state: 'active' };
    return { package: next, type: 'reactivate', amount: 0, result: registersOf(next) };
  };
}
