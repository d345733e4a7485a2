import { randomUUID } from 'node:crypto';
import { isVbiError } from '@vbi/core/errors';
import { pendingWithout, PendingRequest, withPending } from './client-state';
import type { ClientCore } from './client-core';
import { outOfStep } from './envelope';
import type { PrintItemRequest } from './print-item';

/**
 * A request that moves money or prints value: saved in the key file with its key and bytes,
 * then sent; `finish` handles the answer and drops it. A stale challenge (nothing happened)
 * resyncs and sends it once more under a new key. A network failure leaves it pending.
 */
export async function sendPending<T>(core: ClientCore, op: PendingRequest['op'], path: string, body: unknown, idempotencyKey: string,
  finish: (p: PendingRequest, raw: unknown) => Promise<T>, requests?: PrintItemRequest[]): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    const p: PendingRequest = { op, path, idempotencyKey: attempt === 0 ? idempotencyKey : randomUUID(), envelope: core.envelope(op, body), requests, sentAt: core.clock() };
    await core.keyFile.save(withPending(core.keyFile.state, p));
    let raw: unknown;
    try {
      raw = await core.http.post<unknown>(p.path, p.envelope, { idempotencyKey: p.idempotencyKey });
    } catch (e) {
      // the answer is lost, or the service failed part way: recover() finishes it
      if (!isVbiError(e) || e.kind !== 'user') throw e;
      await dropPending(core, p); // refused: nothing happened
      if (outOfStep(e) && attempt === 0) {
        await core.resyncNow().catch(() => Promise.reject(e));
        continue;
      }
      throw e;
    }
    return finish(p, raw);
  }
}

export async function dropPending(core: ClientCore, p: PendingRequest): Promise<void> {
  await core.keyFile.save({ ...core.keyFile.state, pending: pendingWithout(core.keyFile.state, p.idempotencyKey) });
}
