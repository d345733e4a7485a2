import { isVbiError } from '@vbi/core/errors';
import type { OperationalResponse } from '@vbi/core/protocol/messages';
import type { PendingRequest } from './client-state';
import type { ClientCore } from './client-core';
import { dropPending } from './pending-requests';
import { finishBatch, PrintOutcome, report } from './printing';

/** A purchase, print or correction whose answer was lost, finished by recover(). */
export interface RecoveredRequest {
  op: PendingRequest['op'];
  idempotencyKey: string;
  /** purchase: the operational response. */
  response?: OperationalResponse;
  /** print, correction: the outcome as print() would have returned it. */
  outcome?: PrintOutcome;
  /** The service refused the request (nothing happened): its error code. */
  refused?: string;
}

/**
 * recover() inside the queue: see there. Requests the service refuses are dropped (nothing
 * happened). A print or correction of another session waits while no session is open (its
 * indicia could not be received); everything else is finished before the caller's request.
 */
export async function recoverPending(core: ClientCore): Promise<RecoveredRequest[]> {
  const done: RecoveredRequest[] = [];
  for (const p of [...(core.keyFile.state.pending ?? [])]) {
    const sessionId = (p.envelope.body as { sessionId?: string }).sessionId;
    const open = core.current && !core.current.ended ? core.current : undefined;
    if (p.op !== 'purchase' && !open && sessionId !== core.current?.sessionId) continue;
    let raw: unknown;
    try {
      raw = await core.http.post<unknown>(p.path, p.envelope, { idempotencyKey: p.idempotencyKey });
    } catch (e) {
      if (!isVbiError(e) || e.kind !== 'user' || e.code === 'IDEMPOTENCY_IN_PROGRESS') throw e;
      await dropPending(core, p);
      const r: RecoveredRequest = { op: p.op, idempotencyKey: p.idempotencyKey, refused: (e as { code?: string }).code ?? 'ERROR' };
      done.push(r);
      await core.onRecovered?.(r);
      continue;
    }
    let r: RecoveredRequest;
    if (p.op === 'purchase') {
      const response = await core.accept<Record<string, unknown>>(raw, 'purchase');
      await dropPending(core, p);
      r = { op: p.op, idempotencyKey: p.idempotencyKey, response };
    } else {
      const outcome = await finishBatch(core, p, raw);
      r = { op: p.op, idempotencyKey: p.idempotencyKey, outcome: await report(outcome) };
    }
    done.push(r);
    await core.onRecovered?.(r);
  }
  return done;
}
