import { IndiciumFields, ItemType } from '../fields';

/**
 * The human-readable part of an indicium (the text printed next to the barcode), always
 * derived from the decoded indicium bytes so that text and barcode cannot disagree.
 */
const HEADINGS: Record<ItemType, string> = { postage: 'POSTAGE', ticket: 'TICKET', coupon: 'COUPON', voucher: 'VOUCHER' };
const MONTHS = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];

/** Mills as money: '$0.68', or three decimals when the amount has fractional cents ('$0.685'). */
export function formatMills(mills: number, currencySymbol = '$'): string {
  if (!Number.isSafeInteger(mills) || mills < 0) throw new Error(`not an amount of mills: ${mills}`);
  const units = Math.floor(mills / 1000);
  const frac = String(mills % 1000).padStart(3, '0');
  return `${currencySymbol}${units.toLocaleString('en-US')}.${frac.endsWith('0') ? frac.slice(0, 2) : frac}`;
}

/** 'YYYY-MM-DD' as printed on meter stamps: 'JAN 15 2026'. */
export function formatMailingDate(iso: string): string {
  const [y, m, d] = iso.split('-');
  return `${MONTHS[Number(m) - 1]} ${d} ${y}`;
}

/** The lines of the postage block: heading, amount (printed larger), then the details. */
export function indiciumText(f: IndiciumFields, currencySymbol = '$'): { heading: string; amount: string; details: string[] } {
  return {
    heading: HEADINGS[f.itemType],
    amount: formatMills(f.postage, currencySymbol),
    details: [
      `${f.rateCategory} ${formatMailingDate(f.dateOfMailing)}`,
      `FROM ZIP ${f.originZip}`,
      `METER ${f.meterId}`,
      `NO. ${f.sequence}`,
    ],
  };
}
