import { redeliveryAad } from '@vbi/core/protocol/bodies';
import { ProtocolOperation } from './operational';

/** One committed indicium to send again: its stored bytes and what the client needs to place it. */
export interface StoredIndicium {
  indiciumId: number;
  sequence: number;
  kind: 'postage' | 'correction';
  postage: number;
  batchId: string | null;
  index: number | null;
  /** The indicium as printed (signed data ‖ signature): the same bytes, never a new signature. */
  indicium: Buffer;
  receipt: unknown;
}

/**
 * `redeliver` (docs/protocol.md 6): committed indicia of the meter encrypted again, inside the
 * token, to the session key of the session that asks (AAD redeliveryAad). Nothing is debited or
 * signed again; the registers do not change.
 */
export function redeliver(req: { sessionId: string; wrappedSessionKey: Buffer; indicia: StoredIndicium[] }): ProtocolOperation<Record<string, unknown>> {
  return async (pkg, ctx) => {
    const keyChain = [ctx.usk, { wrapped: req.wrappedSessionKey, usage: 'encrypt' as const }];
    const items = [];
    for (const i of req.indicia) {
      const encryptedIndicium = await (ctx.keys ?? ctx.hsm).encryptWithKeyChain({ keyChain, plaintext: i.indicium, aad: redeliveryAad(req.sessionId, i.indiciumId) });
      items.push({
        indiciumId: i.indiciumId, sequence: i.sequence, kind: i.kind, postage: i.postage,
        ...(i.batchId !== null ? { batchId: i.batchId, index: i.index } : {}),
        receipt: i.receipt ?? undefined, encryptedIndicium: encryptedIndicium.toString('base64'),
      });
    }
    return { package: pkg, type: 'inquiry', amount: 0, result: { items } };
  };
}
