import { isVbiError } from '@vbi/core/errors';
import { pendingWithout, PendingRequest, withPending } from '../../client/client-state';
import { NetworkError } from '../../client/http';
import type { PrintItemRequest } from '../../client/print-item';
import { isOutOfStepCode } from '@vbi/core/protocol/envelope';
import { randomUuid } from '../crypto/web-crypto';
import type { WebClientCore } from './web-client-core';

/**
 * A request that moves money or prints value, as the SDK sends it: saved in the key file
 * (the SDK's `pending` list, same format) with its Idempotency-Key and bytes, then sent;
 * `finish` handles the answer and drops it. A refusal drops it (nothing happened); a request
 * refused because the client was out of step is sent once more after a resync. A lost answer
 * leaves it in the key file, where `vbi recover` finishes it with the same key and bytes.
 */
export async function sendPending<T>(core: WebClientCore, op: 'purchase' | 'print', path: string, body: unknown,
  finish: (p: PendingRequest, raw: unknown) => Promise<T>, requests?: PrintItemRequest[]): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    const p: PendingRequest = { op, path, idempotencyKey: randomUuid(), envelope: await core.envelope(op, body), requests, sentAt: Date.now() };
    await core.save(withPending(core.file.state, p));
    let raw: unknown;
    try {
      raw = await core.http.post<unknown>(path, p.envelope, { idempotencyKey: p.idempotencyKey });
    } catch (e) {
      if (e instanceof NetworkError) {
        throw new NetworkError(`${e.message}; the ${op} request is kept in the key file: download it (Meter page) and run vbi recover to finish it`, e);
      }
      if (!isVbiError(e) || e.kind !== 'user') throw e;
      await dropPending(core, p);
      if (isOutOfStepCode(e.code) && attempt === 0) {
        await core.resyncNow().catch(() => Promise.reject(e));
        continue;
      }
      throw e;
    }
    return finish(p, raw);
  }
}

export async function dropPending(core: WebClientCore, p: PendingRequest): Promise<void> {
  await core.save({ ...core.file.state, pending: pendingWithout(core.file.state, p.idempotencyKey) });
}
