import { randomUUID } from 'node:crypto';
import { vbiError } from '@vbi/core/errors';
import type { RegisterEcho } from '@vbi/core/protocol/messages';
import type { CorrectionAnswer, PrintAnswer, PrintItemAnswer } from '@vbi/core/protocol/bodies';
import { pendingWithout, PendingRequest } from './client-state';
import type { ClientCore } from './client-core';
import { buildPrintItem, PrintItemRequest } from './print-item';
import { checkPrintedItems, PrintedItem } from './print-results';
import { sendPending } from './pending-requests';
import { redeliverNow } from './redelivery';
import { isEndingCode } from './session';
import type { WirePrintItem } from './wire';

/**
 * The print path of VbiClient: print() and correction() send one request in the open session
 * (./pending-requests.ts saves it first); finishBatch checks the answer and saves the registers;
 * report counts the items. recover() finishes a print whose answer was lost the same way.
 */

/** Progress of a print: called once per item, in order, after the batch's answer was checked and saved. */
export interface PrintProgress {
  done: number;
  total: number;
  item: PrintedItem;
}

/** The outcome of a print request. */
export interface PrintOutcome {
  batchId?: string;
  items: PrintedItem[];
  printed: number;
  /** Not printed, nothing debited: the session ended first. */
  voided: number;
  /** Refused by the service (reason), nothing debited. */
  failed: number;
  /** Debited but a client check failed: do not mail; ask for a refund. */
  unverified: number;
  /** The register copy after the batch (from the last signed receipt). */
  registers: RegisterEcho;
}

/** VbiClient.print: one authorisation envelope for the batch, each item with its counter and dynamic password. */
export async function print(core: ClientCore, items: PrintItemRequest[], opts: { onProgress?: (p: PrintProgress) => void | Promise<void>; idempotencyKey?: string }): Promise<PrintOutcome> {
  if (items.length < 1 || items.length > 500) throw vbiError('BAD_REQUEST', 'a print batch has 1 to 500 items', { field: 'items' });
  const session = core.requireSession();
  const outcome = await session.exclusive(() => core.serial(async () => {
    await core.recoverPending();
    const clientTime = core.clock();
    const wire = items.map((item) => buildPrintItem({
      meterId: core.meterId, sessionId: session.sessionId, counter: session.nextCounter(), clientTime, hmk: core.hmk, item,
    }));
    return core.sessionCall(session, () => sendPending(core, 'print', '/v1/indicia', { sessionId: session.sessionId, items: wire }, opts.idempotencyKey ?? randomUUID(),
      (p, raw) => finishBatch(core, p, raw), items));
  }));
  return report(outcome, opts.onProgress);
}

/** VbiClient.correction: a correction indicium, printed in the open session like one print item. */
export async function correction(core: ClientCore, req: { originalIndiciumId: number; item: PrintItemRequest; idempotencyKey?: string }): Promise<PrintedItem> {
  const session = core.requireSession();
  const outcome = await session.exclusive(() => core.serial(async () => {
    await core.recoverPending();
    const wire = buildPrintItem({ meterId: core.meterId, sessionId: session.sessionId, counter: session.nextCounter(), clientTime: core.clock(), hmk: core.hmk, item: req.item });
    const body = { sessionId: session.sessionId, originalIndiciumId: req.originalIndiciumId, item: wire };
    return core.sessionCall(session, () => sendPending(core, 'correction', '/v1/corrections', body, req.idempotencyKey ?? randomUUID(),
      (p, raw) => finishBatch(core, p, raw), [req.item]));
  }));
  return outcome.items[0];
}

/** The answer of a print or correction, checked; indicia of another session are fetched again. */
export async function finishBatch(core: ClientCore, p: PendingRequest, raw: unknown): Promise<{ batchId?: string; items: PrintedItem[]; registers: RegisterEcho }> {
  const answer = raw as PrintAnswer & CorrectionAnswer;
  const body = p.envelope.body as { sessionId: string; items?: WirePrintItem[]; item?: WirePrintItem };
  const wire = body.items ?? (body.item ? [body.item] : []);
  const answered = p.op === 'print' ? (Array.isArray(answer?.items) ? answer.items : []) : (answer?.item ? [{ ...answer.item, index: 0 }] : []);
  const session = core.current;
  const sameSession = !!session && session.sessionId === body.sessionId;
  const anyPrinted = answered.some((a) => a?.status === 'printed');
  if (!sameSession && anyPrinted && (!session || session.ended)) {
    throw vbiError('SESSION_NOT_FOUND', `print request ${p.idempotencyKey} was answered in session ${body.sessionId}; open a session to receive its indicia again`);
  }
  const auth = await core.accept<{ batchId?: string }>(answer?.authorization, p.op);
  let decrypt: ((a: PrintItemAnswer) => Buffer) | undefined;
  if (!sameSession && anyPrinted) {
    const again = await redeliverNow(core, { idempotencyKey: p.idempotencyKey });
    const byId = new Map(again.map((x) => [x.indiciumId, x.indicium]));
    decrypt = (a) => {
      const bytes = byId.get(a.indiciumId as number);
      if (!bytes) throw vbiError('INDICIUM_MALFORMED', `indicium ${String(a.indiciumId)} was not delivered again`);
      return bytes;
    };
  }
  const checked = checkPrintedItems({
    meterId: core.meterId, op: p.op === 'correction' ? 'correction' : 'print', sessionId: body.sessionId, sessionKey: sameSession ? session!.sessionKey : Buffer.alloc(32),
    // the items come first in the request's one dispatch, from the registers the envelope carried
    // (the module checked them); the authorisation's receipt follows them
    requests: p.requests ?? [], items: wire, answered, startRegisters: p.envelope.registers,
    receipts: await core.receiptsFor(answered), decrypt,
  });
  const newest = Math.max(0, ...checked.items.map((i) => i.receipt?.sequence ?? 0));
  const state = core.keyFile.state;
  const fresher = newest >= (state.lastSequence ?? 0);
  await core.keyFile.save({
    ...state, ...(fresher ? { registers: checked.registers, lastSequence: newest } : {}),
    pending: pendingWithout(state, p.idempotencyKey),
  });
  const ended = checked.items.find((i) => i.status === 'voided' && isEndingCode(i.reason));
  if (ended && sameSession) session!.end(vbiError(ended.reason as 'SESSION_ENDED', `session ${body.sessionId} ended during the batch (item ${ended.index})`));
  return { batchId: auth.result?.batchId, ...checked };
}

/** Calls `onProgress` once per item, in order, and counts the items by status. */
export async function report(outcome: { batchId?: string; items: PrintedItem[]; registers: RegisterEcho }, onProgress?: (p: PrintProgress) => void | Promise<void>): Promise<PrintOutcome> {
  const total = outcome.items.length;
  let done = 0;
  for (const item of outcome.items) {
    done++;
    await onProgress?.({ done, total, item });
  }
  const count = (s: PrintedItem['status']) => outcome.items.filter((i) => i.status === s).length;
  return { ...outcome, printed: count('printed'), voided: count('voided'), failed: count('failed'), unverified: count('unverified') };
}
