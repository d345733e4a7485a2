import { vbiError } from '@vbi/core/errors';
import { MAX_AMOUNT_MILLS } from '@vbi/core/protocol/amounts';

/** Currency written as people type it: digits, an optional point and at most 3 decimals. */
const DECIMAL = /^(\d+)(?:\.(\d{0,3}))?$/;

/**
 * Parses a decimal currency amount into integer mills without ever touching a float:
 * "20.00" → 20000, "0.5" → 500, "1.235" → 1235, "7" → 7000. More than three decimals, signs,
 * exponents, thousands separators, zero and amounts above MAX_AMOUNT_MILLS are INVALID_AMOUNT
 * (`details.field` = `field`).
 */
export function parseMills(text: string, field = 'amount'): number {
  const trimmed = text.trim().replace(/^\$/, '');
  const m = DECIMAL.exec(trimmed);
  if (!m) {
    const tooPrecise = /^\d+\.\d{4,}$/.test(trimmed);
    throw vbiError('INVALID_AMOUNT', tooPrecise
      ? `${field} '${text}' has more than 3 decimals (the smallest unit is a mill, 0.001)`
      : `${field} '${text}' is not a decimal amount like 20.00`, { field });
  }
  const units = m[1].replace(/^0+(?=\d)/, '');
  const mills = (m[2] ?? '').padEnd(3, '0');
  // 16 digits of units would already exceed MAX_AMOUNT_MILLS: refuse before BigInt-free maths.
  if (units.length > 12) throw vbiError('INVALID_AMOUNT', `${field} exceeds ${MAX_AMOUNT_MILLS} mills`, { field });
  const value = Number(units) * 1000 + Number(mills);
  if (value === 0) throw vbiError('INVALID_AMOUNT', `${field} must be positive`, { field });
  if (value > MAX_AMOUNT_MILLS) throw vbiError('INVALID_AMOUNT', `${field} exceeds ${MAX_AMOUNT_MILLS} mills`, { field });
  return value;
}

export { formatMills } from '@vbi/core/indicium/render/human-readable';
