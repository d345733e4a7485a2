import { vbiError } from '@vbi/core/errors';
import type { DecodedIndicium } from '@vbi/core/indicium/layout';
import type { Receipt, RegisterEcho } from '@vbi/core/protocol/messages';
import { decryptIndicium } from './client-crypto';
import type { ReceiptVerifier } from './module-trust';
import { checkPrintedIndicium, PrintItemRequest } from './print-item';
import type { PrintItemAnswer } from '@vbi/core/protocol/bodies';
import type { WirePrintItem } from './wire';

/** The outcome of one item, after the client's checks. */
export interface PrintedItem {
  index: number;
  /**
   * printed: debited, decrypted and checked. voided: the session ended first; failed: the
   * service refused the item (`reason`, e.g. INSUFFICIENT_FUNDS); neither is debited.
   * unverified: the service printed (and debited) it but a client check failed (`error`): do
   * not mail it; ask for a refund.
   */
  status: 'printed' | 'voided' | 'failed' | 'unverified';
  request: PrintItemRequest;
  item: WirePrintItem;
  indiciumId?: number;
  /** The indicium bytes to print as a DataMatrix (status printed). */
  indicium?: Buffer;
  decoded?: DecodedIndicium;
  receipt?: Receipt;
  reason?: string;
  error?: Error;
}

/**
 * Checks the items of a print (or correction) answer one by one: every printed item's
 * receipt is signed by a known module for our meter and op; the registers move by exactly the
 * item's postage; the
 * indicium decrypts under the session key with the item's counter and matches the item and the
 * receipt. Returns every item and the registers of the last validly signed receipt, which are
 * what the module holds now (the answer's own `registers` are not signed and not used).
 */
export function checkPrintedItems(req: {
  meterId: string; op: 'print' | 'correction'; sessionId: string; sessionKey: Buffer;
  requests: PrintItemRequest[]; items: WirePrintItem[]; answered: PrintItemAnswer[];
  startRegisters: RegisterEcho; receipts: ReceiptVerifier;
  /** How an item's indicium is decrypted; default: under `sessionKey` with the item's counter. */
  decrypt?: (answered: PrintItemAnswer, item: WirePrintItem) => Buffer;
}): { items: PrintedItem[]; registers: RegisterEcho } {
  let registers = req.startRegisters;
  const out: PrintedItem[] = [];
  for (let index = 0; index < req.items.length; index++) {
    const item = req.items[index];
    const base = { index, request: req.requests[index], item };
    const a = req.answered.find((x) => x.index === index);
    if (!a || a.status !== 'printed') {
      out.push({ ...base, status: a?.status === 'failed' ? 'failed' : 'voided', reason: a?.reason ?? 'NOT_ANSWERED' });
      continue;
    }
    const receipt = a.receipt;
    try {
      if (!receipt || receipt.meterId !== req.meterId || receipt.op !== req.op) throw vbiError('CERT_INVALID', `item ${index}: no receipt for ${req.op} on meter ${req.meterId}`);
      if (!req.receipts.verify(receipt)) throw vbiError('CERT_INVALID', `item ${index}: receipt signature does not verify`);
    } catch (e) {
      out.push({ ...base, status: 'unverified', indiciumId: a.indiciumId, receipt, error: e as Error, reason: (e as { code?: string }).code });
      continue;
    }
    const before = registers;
    registers = { ascending: receipt.ascendingRegister, descending: receipt.descendingRegister };
    try {
      if (receipt.amount !== item.postage || receipt.ascendingRegister !== before.ascending + item.postage || receipt.descendingRegister !== before.descending - item.postage) {
        throw vbiError('CERT_INVALID', `item ${index}: receipt for ${receipt.amount} mills moved the registers from ${before.ascending}/${before.descending} to ${receipt.ascendingRegister}/${receipt.descendingRegister}, not by the postage ${item.postage}`);
      }
      if (typeof a.encryptedIndicium !== 'string') throw vbiError('INDICIUM_MALFORMED', `item ${index}: printed without an indicium`);
      const indicium = req.decrypt
        ? req.decrypt(a, item)
        : decryptIndicium({ sessionKey: req.sessionKey, sessionId: req.sessionId, counter: item.counter, encryptedIndicium: a.encryptedIndicium });
      const decoded = checkPrintedIndicium({ indicium, item, meterId: req.meterId, receipt });
      out.push({ ...base, status: 'printed', indiciumId: a.indiciumId, indicium, decoded, receipt });
    } catch (e) {
      out.push({ ...base, status: 'unverified', indiciumId: a.indiciumId, receipt, error: e as Error, reason: (e as { code?: string }).code });
    }
  }
  return { items: out, registers };
}
