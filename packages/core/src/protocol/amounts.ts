import { vbiError } from '../errors';

/** Largest amount any single command accepts: 10^12 mills = one billion currency units. */
export const MAX_AMOUNT_MILLS = 1_000_000_000_000;

/**
 * Money enters as an integer number of mills. Anything else (strings, floats, NaN, negative,
 * zero unless allowed, absurdly large) is INVALID_AMOUNT before the database or a module is touched.
 */
export function assertMills(value: unknown, field = 'amount', opts: { allowZero?: boolean } = {}): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw vbiError('INVALID_AMOUNT', `${field} must be an integer number of mills`, { field });
  }
  if (value < 0 || (value === 0 && !opts.allowZero)) {
    throw vbiError('INVALID_AMOUNT', `${field} must be ${opts.allowZero ? 'zero or more' : 'positive'}`, { field });
  }
  if (value > MAX_AMOUNT_MILLS) throw vbiError('INVALID_AMOUNT', `${field} exceeds ${MAX_AMOUNT_MILLS} mills`, { field });
  return value;
}
