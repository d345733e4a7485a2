import { vbiError } from '@vbi/core/errors';
import { indiciumAad, PrintAnswer, redeliveryAad } from '@vbi/core/protocol/bodies';
import type { OperationalResponse, Receipt } from '@vbi/core/protocol/messages';
import { checkIndiciumMatchesReceipt, checkPrintedIndicium, postageFor, PrintItemRequest, wirePrintItem } from '../../client/print-item';
import type { RedeliverySelector } from '../../client/redelivery';
import type { WirePrintItem } from '../../client/wire';
import { decodeIndicium, DecodedIndicium } from '@vbi/core/indicium/layout';
import { decryptWithSessionKey } from '../crypto/web-crypto';
import { codeOf, WebClientCore } from './web-client-core';
import { dropPending, sendPending } from './web-pending';
import { WebSession } from './web-session';

/** One indicium the page holds: printed now or fetched again (reprint). */
export interface WebIndicium {
  indiciumId: number;
  indicium: Buffer;
  decoded: DecodedIndicium;
  receipt: Receipt;
}

/** One item of a print answer, checked. */
export interface WebPrintedItem {
  index: number;
  status: 'printed' | 'voided' | 'failed';
  reason?: string;
  printed?: WebIndicium;
}

/** WebClient.print: the batch sent (saved first, ./web-pending.ts), its indicia decrypted and checked. */
export async function print(core: WebClientCore, items: PrintItemRequest[]): Promise<{ batchId?: string; items: WebPrintedItem[] }> {
  if (items.length < 1 || items.length > 500) throw vbiError('BAD_REQUEST', 'a print batch has 1 to 500 items', { field: 'items' });
  return core.serial(async () => {
    const s = core.requireSession();
    const clientTime = Date.now();
    const wire: WirePrintItem[] = [];
    for (const item of items) wire.push(await printItem(core, s, item, clientTime));
    let answer: PrintAnswer;
    let auth: OperationalResponse<{ batchId?: string }>;
    try {
      [answer, auth] = await sendPending(core, 'print', '/v1/indicia', { sessionId: s.sessionId, items: wire }, async (p, raw) => {
        const a = raw as PrintAnswer;
        const checked = await core.accept<{ batchId?: string }>(a?.authorization, 'print');
        await dropPending(core, p);
        return [a, checked] as const;
      }, items);
    } catch (e) {
      if (WebSession.ends(codeOf(e))) {
        s.end(codeOf(e), (e as Error).message);
        core.onSessionChange?.(s);
      }
      throw e;
    }
    const out: WebPrintedItem[] = [];
    for (const a of Array.isArray(answer.items) ? answer.items : []) {
      if (a.status !== 'printed') {
        out.push({ index: a.index, status: a.status, reason: a.reason });
        if (a.status === 'voided' && WebSession.ends(a.reason)) s.end(a.reason ?? 'SESSION_ENDED', `the session ended before item ${a.index}`);
        continue;
      }
      const w = wire[a.index];
      if (!w || !a.receipt || typeof a.encryptedIndicium !== 'string') throw vbiError('INDICIUM_MALFORMED', `print answer item ${a.index} is incomplete`);
      const indicium = await decryptWithSessionKey({ sessionKey: s.sessionKey, encrypted: a.encryptedIndicium, aad: indiciumAad(s.sessionId, w.counter), what: `indicium (counter ${w.counter})` });
      out.push({ index: a.index, status: 'printed', printed: await checkIndicium(core, indicium, a.indiciumId ?? 0, a.receipt, (decoded) => checkPrintedIndicium({ indicium, item: w, meterId: core.meterId, receipt: a.receipt! }) && decoded) });
    }
    core.onSessionChange?.(s);
    return { batchId: auth.result?.batchId, items: out };
  });
}

/** WebClient.redeliver: committed indicia again, encrypted to the open session, checked against their receipts. */
export function redeliver(core: WebClientCore, selector: RedeliverySelector): Promise<WebIndicium[]> {
  return core.serial(async () => {
    const s = core.requireSession();
    const r = await core.operateNow<{ items: Array<{ indiciumId: number; encryptedIndicium: string; receipt: Receipt }> }>('redeliver', '/v1/indicia/redeliver', { sessionId: s.sessionId, ...selector });
    const out: WebIndicium[] = [];
    for (const x of Array.isArray(r.result?.items) ? r.result.items : []) {
      const indicium = await decryptWithSessionKey({ sessionKey: s.sessionKey, encrypted: x.encryptedIndicium, aad: redeliveryAad(s.sessionId, x.indiciumId), what: `redelivered indicium ${x.indiciumId}` });
      out.push(await checkIndicium(core, indicium, x.indiciumId, x.receipt, (decoded) => decoded));
    }
    return out;
  });
}

async function checkIndicium(core: WebClientCore, indicium: Buffer, indiciumId: number, receipt: Receipt, check: (d: DecodedIndicium) => DecodedIndicium): Promise<WebIndicium> {
  if (!receipt || receipt.meterId !== core.meterId || !(await core.receipts.verify(receipt))) {
    throw vbiError('CERT_INVALID', `indicium ${indiciumId}: its receipt is not signed by a module of this meter`);
  }
  const decoded = check(decodeIndicium(indicium));
  checkIndiciumMatchesReceipt(decoded, receipt, core.meterId, `indicium ${indiciumId}`);
  return { indiciumId, indicium, decoded, receipt };
}

/** One item with its counter and dynamic password (the SDK's buildPrintItem on WebCrypto). */
async function printItem(core: WebClientCore, s: WebSession, item: PrintItemRequest, clientTime: number): Promise<WirePrintItem> {
  const postage = postageFor(item, clientTime);
  const counter = s.nextCounter();
  const dynamicPassword = await core.dynamicPassword({ sessionId: s.sessionId, counter, clientTime, purpose: 'print', destinationZip: item.destinationZip, postage });
  return wirePrintItem({ counter, clientTime, item, postage, dynamicPassword });
}
