import { vbiError } from '@vbi/core/errors';
import type { Receipt } from '@vbi/core/protocol/messages';
import { redeliveryAad } from '@vbi/core/protocol/bodies';
import { decodeIndicium, DecodedIndicium } from '@vbi/core/indicium/layout';
import { decryptIndicium } from './client-crypto';
import type { ClientCore } from './client-core';
import { checkIndiciumMatchesReceipt } from './print-item';

/** A committed indicium fetched again (redeliver): the same bytes as printed. */
export interface RedeliveredIndicium {
  indiciumId: number;
  sequence: number;
  kind: 'postage' | 'correction';
  postage: number;
  batchId?: string;
  index?: number;
  indicium: Buffer;
  decoded: DecodedIndicium;
  receipt: Receipt;
}

/** Which committed indicia to fetch again: one print request's, by batch or key, or a range of piece numbers (the indicia's `sequence`). */
export type RedeliverySelector = { batchId: string } | { idempotencyKey: string } | { fromSequence: number; toSequence: number };

/** VbiClient.redeliver inside the queue: each indicium decrypted and checked against its signed receipt. */
export async function redeliverNow(core: ClientCore, selector: RedeliverySelector): Promise<RedeliveredIndicium[]> {
  const session = core.requireSession();
  const r = await core.operateNow<{ items: Array<Omit<RedeliveredIndicium, 'indicium' | 'decoded'> & { encryptedIndicium: string }> }>(
    'redeliver', '/v1/indicia/redeliver', { sessionId: session.sessionId, ...selector }, { lostAnswer: 'repeat' });
  const items = Array.isArray(r.result?.items) ? r.result.items : [];
  const receipts = await core.receiptsFor(items);
  return items.map((x) => {
    const receipt = x.receipt;
    if (!receipt || receipt.meterId !== core.meterId || !receipts.verify(receipt)) {
      throw vbiError('CERT_INVALID', `redelivered indicium ${x.indiciumId}: its receipt is not signed by a module of this meter`);
    }
    const indicium = decryptIndicium({
      sessionKey: session.sessionKey, sessionId: session.sessionId, counter: 0, encryptedIndicium: x.encryptedIndicium, aad: redeliveryAad(session.sessionId, x.indiciumId),
    });
    const decoded = decodeIndicium(indicium);
    checkIndiciumMatchesReceipt(decoded, receipt, core.meterId, `redelivered indicium ${x.indiciumId}`);
    return { indiciumId: x.indiciumId, sequence: x.sequence, kind: x.kind, postage: x.postage, batchId: x.batchId, index: x.index, indicium, decoded, receipt };
  });
}
