import { vbiError } from '@vbi/core/errors';
import { CommandOutcome } from '../psd-engine';
import { PsdPackage } from '@vbi/core/psd/psd-package';
import { existing, requireActive, requireFunds, registersOf, Registers } from './guards';

/**
 * Partial refund for spoilage (WO 99/41690 "Refunds"): value leaves the meter's DR and is paid out;
 * the refund register plus the amount may not exceed `spoilageLimitBps` (basis points, 100 = 1%)
 * of the current ascending register, else SPOILAGE_LIMIT.
 */
export function partialRefund(req: { amount: number; spoilageLimitBps: number }) {
  return async (opened: PsdPackage | null): Promise<CommandOutcome<Registers>> => {
    const pkg = existing(opened);
    requireActive(pkg);
    requireFunds(pkg, req.amount);
    const limit = Math.floor((pkg.ascendingRegister * req.spoilageLimitBps) / 10_000);
    if (pkg.refundRegister + req.amount > limit) {
      throw vbiError('SPOILAGE_LIMIT', `meter ${pkg.meterId}: refunds ${pkg.refundRegister} + ${req.amount} > ${limit} mills (${req.spoilageLimitBps / 100}% of AR ${pkg.ascendingRegister})`);
    }
    const next = { ...pkg, descendingRegister: pkg.descendingRegister - req.amount, refundRegister: pkg.refundRegister + req.amount };
    return { package: next, type: 'refund', amount: req.amount, totals: { refunded: req.amount }, result: registersOf(next) };
  };
}

/** Full refund: the meter is closed and its remaining DR goes back to the vendor's pool. */
export function fullRefund() {
  return async (opened: PsdPackage | null): Promise<CommandOutcome<Registers & { refunded: number }>> => {
    const pkg = existing(opened);
    if (pkg.state === 'closed') throw vbiError('METER_CLOSED', `meter ${pkg.meterId} is closed`);
    const refunded = pkg.descendingRegister;
    const next: PsdPackage = { ...pkg, descendingRegister: 0, refundRegister: pkg.refundRegister + refunded, state: 'closed' };
    return { package: next, type: 'refund', amount: refunded, totals: { refunded }, result: { ...registersOf(next), refunded } };
  };
}

/** Withdraw: close an empty meter (use a full refund first if it still holds postage). */
export function withdraw() {
  return async (opened: PsdPackage | null): Promise<CommandOutcome<Registers>> => {
    const pkg = existing(opened);
    if (pkg.state === 'closed') throw vbiError('METER_CLOSED', `meter ${pkg.meterId} is closed`);
    if (pkg.descendingRegister !== 0) throw vbiError('METER_NOT_EMPTY', `meter ${pkg.meterId} holds ${pkg.descendingRegister} mills`);
    const next: PsdPackage = { ...pkg, state: 'closed' };
    return { package: next, type: 'withdraw', amount: 0, result: registersOf(next) };
  };
}
