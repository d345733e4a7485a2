import { vbiError } from '@vbi/core/errors';
import { DecodedIndicium, decodeIndicium } from '@vbi/core/indicium/layout';
import type { ItemType } from '@vbi/core/indicium/fields';
import type { Receipt } from '@vbi/core/protocol/messages';
import { computePostage, PostageQuote } from '@vbi/core/rates/postage';
import { dynamicPassword } from './dynamic-password';
import type { PrintRate } from '@vbi/core/protocol/bodies';
import type { WirePrintItem } from './wire';

/** What the caller wants printed. */
export interface PrintItemRequest {
  /** 5, 9 or 11 digits (ZIP, ZIP+4, ZIP+4+delivery point). */
  destinationZip: string;
  /** Mills. Without `rate`: the fixed amount (rate category FIX). With `rate`: must equal the rate's price. */
  postage?: number;
  /** Priced locally with the shipped rate tables (computePostage) and again by the service. */
  rate?: PrintRate;
  /** Default 'postage'. */
  itemType?: ItemType;
  /** 'YYYY-MM-DD'; default the client's local date. */
  dateOfMailing?: string;
}

/** The postage of an item: from `rate` (checked against `postage` when both are given) or fixed. */
export function priceItem(item: PrintItemRequest, at: Date): { postage: number; quote?: PostageQuote } {
  if (item.rate) {
    const quote = computePostage({ mailClass: item.rate.mailClass, weightOz: item.rate.weightOz, zone: item.rate.zone, at });
    if (item.postage !== undefined && item.postage !== quote.postage) {
      throw vbiError('BAD_REQUEST', `postage ${item.postage} differs from the ${quote.rateTableName} rate ${quote.postage} for ${quote.class}`, { field: 'postage' });
    }
    return { postage: quote.postage, quote };
  }
  if (item.postage === undefined || !Number.isSafeInteger(item.postage) || item.postage < 0) {
    throw vbiError('INVALID_AMOUNT', 'an item without a rate needs postage in whole mills', { field: 'postage' });
  }
  return { postage: item.postage };
}

/** The local calendar date of `ms` as YYYY-MM-DD: the day the mailer mails on. */
export function localDate(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

/**
 * The postage of an item to a well-formed destination (5, 9 or 11 digits; BAD_REQUEST otherwise),
 * priced at `clientTime` (priceItem).
 */
export function postageFor(item: PrintItemRequest, clientTime: number): number {
  if (!/^(\d{5}|\d{9}|\d{11})$/.test(item.destinationZip)) {
    throw vbiError('BAD_REQUEST', `destination ZIP '${item.destinationZip}' must have 5, 9 or 11 digits`, { field: 'destinationZip' });
  }
  return priceItem(item, new Date(clientTime)).postage;
}

/** An item as the print request carries it, once its counter, postage and dynamic password are known. */
export function wirePrintItem(req: { counter: number; clientTime: number; item: PrintItemRequest; postage: number; dynamicPassword: string }): WirePrintItem {
  const { item } = req;
  return {
    counter: req.counter,
    clientTime: req.clientTime,
    destinationZip: item.destinationZip,
    postage: req.postage,
    ...(item.rate ? { rate: { mailClass: item.rate.mailClass, weightOz: item.rate.weightOz, ...(item.rate.zone !== undefined ? { zone: item.rate.zone } : {}) } } : {}),
    itemType: item.itemType ?? 'postage',
    dateOfMailing: item.dateOfMailing ?? localDate(req.clientTime),
    dynamicPassword: req.dynamicPassword,
  };
}

/**
 * One item of a print request (docs/protocol.md 4), with its dynamic password over the
 * session, the counter, the client time, the destination and the postage.
 */
export function buildPrintItem(req: {
  meterId: string; sessionId: string; counter: number; clientTime: number; hmk: Buffer; item: PrintItemRequest;
}): WirePrintItem {
  const { item } = req;
  const postage = postageFor(item, req.clientTime);
  const password = dynamicPassword(req.hmk, {
    meterId: req.meterId, sessionId: req.sessionId, counter: req.counter, clientTime: req.clientTime,
    purpose: 'print', destinationZip: item.destinationZip, postage,
  });
  return wirePrintItem({ counter: req.counter, clientTime: req.clientTime, item, postage, dynamicPassword: password });
}

/**
 * Checks a decrypted indicium against what was asked and what the module signed in the item's
 * receipt: it decodes (INDICIUM_MALFORMED), and meter, item type, postage, destination, date of
 * mailing and the registers after the item all match (INDICIUM_FIELD_INVALID naming the field).
 */
export function checkPrintedIndicium(req: { indicium: Buffer; item: WirePrintItem; meterId: string; receipt: Receipt }): DecodedIndicium {
  const decoded = decodeIndicium(req.indicium);
  const f = decoded.fields;
  const expect: Array<[string, unknown, unknown]> = [
    ['meterId', f.meterId, req.meterId],
    ['itemType', f.itemType, req.item.itemType],
    ['postage', f.postage, req.item.postage],
    ['destinationZip', f.destinationZip, req.item.destinationZip],
    ['dateOfMailing', f.dateOfMailing, req.item.dateOfMailing],
    ['ascendingRegister', f.ascendingRegister, req.receipt.ascendingRegister],
    ['descendingRegister', f.descendingRegister, req.receipt.descendingRegister],
  ];
  for (const [field, got, want] of expect) {
    if (got !== want) throw vbiError('INDICIUM_FIELD_INVALID', `printed indicium has ${field} ${String(got)}, expected ${String(want)}`, { field });
  }
  return decoded;
}

/**
 * A committed indicium carries what its signed receipt says: meter, postage and the registers
 * after it (INDICIUM_FIELD_INVALID, naming `what`, otherwise).
 */
export function checkIndiciumMatchesReceipt(decoded: DecodedIndicium, receipt: Receipt, meterId: string, what: string): void {
  const f = decoded.fields;
  if (f.meterId !== meterId || f.postage !== receipt.amount || f.ascendingRegister !== receipt.ascendingRegister || f.descendingRegister !== receipt.descendingRegister) {
    throw vbiError('INDICIUM_FIELD_INVALID', `${what} does not match its signed receipt`);
  }
}
