import { VbiError } from '@vbi/core/errors';
import { PsdPackage } from '@vbi/core/psd/psd-package';
import { createHash } from 'node:crypto';
import { dynamicPasswordInput, Receipt } from '@vbi/core/protocol/messages';
import { batchTree, receiptBatchSignedBytes, receiptLeafInput } from '@vbi/core/protocol/receipt-batch';
import { Mailpiece, PlannedIndicium, PrintedIndicium, planIndicium, signPlanned } from './create-indicium';
import { registersOf, requireLicensed } from './guards';
import type { KeyScope } from '../../hsm/hsm-module';
import { ProtocolOperation } from './operational';
import { indiciumAad } from '@vbi/core/protocol/bodies';
import type { SessionItem } from './print-item';
import { receiptFields } from './receipt';

/** One item of a print or correction request, with what the host already refused it for. */
export interface BatchItem {
  item: SessionItem;
  mailpiece: Mailpiece;
  /** A refusal found outside the module (a used counter, a client clock off): failed, not debited. */
  refused?: string;
}

/** What became of one item; `printed` carries what the host stores and answers. */
export interface BatchItemResult {
  index: number;
  status: 'printed' | 'voided' | 'failed';
  reason?: string;
  printed?: PrintedIndicium & { encryptedIndicium: Buffer; receipt: Receipt };
}

/**
 * A whole print (or correction) request inside the one module dispatch that also checks its
 * envelope (operational()). Each item, while the session is live: its dynamic password is
 * verified with the HMK inside the token, the postage debited, the indicium signed and encrypted
 * to the session key inside the token; the package is sealed once, after the last item. Items
 * get the piece counter's next values (the piece number each indicium carries, in order) and the
 * record counter's (their receipts' `sequence`, in order); the authorisation's receipt comes
 * after them. The printed items' receipts are one batch (packages/core/src/protocol/receipt-batch.ts): one
 * signature over their tree's root, and each receipt carries its path to that root.
 *
 * A refused item (INSUFFICIENT_FUNDS, a field the indicium cannot carry, a refusal from
 * `refused`) fails alone: the package is as before it. A bad dynamic password or a session found
 * over (`live` answers a code) voids that item and every later one; nothing is debited for them.
 * What became of each item is `kept` (the operational result itself stays what the client MACs).
 *
 * A meter without a licence (docs/licensing.md) is refused as a whole (METER_NOT_LICENSED), before
 * any item: nothing is signed, debited or stored, and the challenge stays valid.
 *
 * The token work is cut into one chunk of items per key scope: the request's own and the spare
 * ones the module has free at that moment (HsmModule.withSpareKeys, one per further token
 * thread, at most SPARE_SCOPES more; never waited for). It runs in three steps, the token's in
 * few trips (KeyScope.many): (1) every item's dynamic password, one trip per scope; (2) in order
 * and without the token, what becomes of each item and the registers and fields of each
 * indicium; (3) per scope, one trip for its items' indicium signatures (the first scope's also
 * signs the receipt root) and one for their encryptions. Every token error fails the whole
 * request.
 */
export function printBatch(req: {
  sessionId: string;
  wrappedSessionKey: Buffer;
  items: BatchItem[];
  type: 'indicium' | 'correction';
  /** Called before each item: a code if the session is over by now (the host's clock), else null. */
  live: (index: number) => Promise<string | null>;
}): ProtocolOperation<Record<string, unknown>, BatchItemResult[]> {
  return async (pkg, ctx) => {
    requireLicensed(pkg);
    const sessionKey = { wrapped: req.wrappedSessionKey, usage: 'encrypt' as const };
    const items = req.items;
    const work = items.filter((x) => !x.refused).length;
    // one chunk per token thread (at most 1 + SPARE_SCOPES), each of at least ITEMS_PER_SCOPE items
    const spare = Math.max(0, Math.min(SPARE_SCOPES, ctx.hsm.parallelism - 1, Math.ceil(work / ITEMS_PER_SCOPE) - 1));
    // the request's key scope (operational()) and the spare ones: each unwraps its keys once
    const run = (keys: KeyScope) => (spare > 0 ? ctx.hsm.withSpareKeys(spare, (more) => batch([keys, ...more])) : batch([keys]));
    return ctx.keys ? run(ctx.keys) : ctx.hsm.withKeys(run);

    async function batch(this: void, scopes: Array<Pick<KeyScope, 'many'>>): ReturnType<ProtocolOperation<Record<string, unknown>, BatchItemResult[]>> {
      // (1) dynamic passwords (every one: after the first bad one the rest are voided anyway)
      const asked = items.map((x, index) => ({ ...x, index })).filter((x) => !x.refused);
      const checked = await inChunks(asked, scopes, (chunk, scope) => scope.many(chunk.map(({ item }) => ({
        verifyHmac: {
          keyChain: ctx.hmkChain,
          data: dynamicPasswordInput({
            meterId: pkg.meterId, sessionId: req.sessionId, counter: item.counter, clientTime: item.clientTime,
            purpose: 'print', destinationZip: item.destinationZip, postage: item.postage,
          }),
          mac: item.dynamicPassword,
        },
      }))));
      const passwordOk: boolean[] = [];
      for (const [i, x] of asked.entries()) passwordOk[x.index] = checked[i] === true;

      // (2) what becomes of each item, in order: registers, sequence and encoded fields
      const results: BatchItemResult[] = [];
      type Planned = { index: number; plan: PlannedIndicium; counter: number; postage: number };
      const planned: Planned[] = [];
      let cur: PsdPackage = pkg;
      let ended: string | null = null;
      let amount = 0;
      for (const [index, { item, mailpiece, refused }] of items.entries()) {
        ended ??= await req.live(index);
        if (ended) {
          results.push({ index, status: 'voided', reason: ended });
          continue;
        }
        if (refused) {
          results.push({ index, status: 'failed', reason: refused });
          continue;
        }
        if (!passwordOk[index]) {
          ended = 'BAD_DYNAMIC_PASSWORD';
          results.push({ index, status: 'voided', reason: ended });
          continue;
        }
        let plan: PlannedIndicium;
        try {
          plan = planIndicium(cur, { postage: item.postage, mailpiece }, ctx.now);
        } catch (e) {
          if (!(e instanceof VbiError) || e.kind !== 'user') throw e;
          results.push({ index, status: 'failed', reason: e.code });
          continue;
        }
        planned.push({ index, plan, counter: item.counter, postage: item.postage });
        results.push({ index, status: 'printed' });
        // the next item takes the following piece number (plan.next counted this piece); it and
        // the authorisation's receipt take the following record counter values
        cur = { ...plan.next, recordCounter: plan.recordSequence };
        amount += item.postage;
      }

      // (3) one receipt tree for the request's items, its root signed once (packages/core/src/protocol/receipt-batch.ts);
      // per scope, in two trips: its items' indicium signatures (the first scope's also the root's),
      // then their encryptions
      const wrappedKey = pkg.secrets.wrappedIndiciumKey;
      const receipts = planned.map((p) => receiptFields(ctx, {
        meterId: pkg.meterId, op: req.type === 'correction' ? 'correction' : 'print', amount: p.postage,
        ascendingRegister: p.plan.next.ascendingRegister, descendingRegister: p.plan.next.descendingRegister, sequence: p.plan.recordSequence,
      }));
      const tree = planned.length > 0 ? batchTree(receipts.map((r) => sha256(receiptLeafInput(r))), sha256) : null;
      let rootSignature = '';
      const printed = await inChunks(planned.map((p, i) => ({ p, i })), scopes, async (chunk, scope, first) => {
        const signatures = await scope.many([
          ...chunk.map(({ p }) => ({ signWithWrappedKey: { wrappedKey, algorithm: p.plan.fields.algorithm, data: p.plan.data } })),
          ...(first ? [{ identitySign: receiptBatchSignedBytes({ root: tree!.root, size: planned.length }) }] : []),
        ]) as Buffer[];
        if (first) rootSignature = signatures[chunk.length].toString('base64');
        const signed = await Promise.all(chunk.map(({ p }, k) => signPlanned(p.plan, wrappedKey, { signWithWrappedKey: async () => signatures[k] })));
        const encrypted = await scope.many(chunk.map(({ p }, k) => ({
          encryptWithKeyChain: { keyChain: [ctx.usk, sessionKey], plaintext: signed[k].indicium, aad: indiciumAad(req.sessionId, p.counter) },
        }))) as Buffer[];
        return chunk.map(({ p, i }, k) => ({ ...registersOf(p.plan.next), ...signed[k], sequence: p.plan.sequence, postage: p.postage, encryptedIndicium: encrypted[k], i }));
      });
      const batchReceipt = (i: number): Receipt => ({
        ...receipts[i], signature: rootSignature,
        batch: { size: planned.length, index: i, path: tree!.paths[i].map((h) => h.toString('base64')) },
      });
      for (const { i, ...item } of printed) results[planned[i].index] = { index: planned[i].index, status: 'printed', printed: { ...item, receipt: batchReceipt(i) } };
      return { package: cur, type: amount > 0 ? req.type : 'inquiry', amount, totals: { printed: amount }, result: {}, kept: results };
    }
  };
}

/** Items per key scope below which a request takes no spare scope (their unwraps would cost more than they save). */
const ITEMS_PER_SCOPE = 8;
/** At most this many spare scopes (sessions) besides the request's own. */
const SPARE_SCOPES = 3;

/**
 * `list` cut into one contiguous chunk per scope (no more chunks than items), `fn` run on every
 * chunk side by side, the answers put back in order. Every chunk settles before this returns
 * (nothing may still run on a session when its scope closes); then the first failure is thrown.
 */
async function inChunks<T, S, R>(list: T[], scopes: S[], fn: (chunk: T[], scope: S, first: boolean) => Promise<R[]>): Promise<R[]> {
  if (list.length === 0) return [];
  const n = Math.min(scopes.length, list.length);
  const size = Math.ceil(list.length / n);
  const runs = scopes.slice(0, n).map((scope, i) => fn(list.slice(i * size, (i + 1) * size), scope, i === 0));
  const settled = await Promise.allSettled(runs);
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.flatMap((r) => (r as PromiseFulfilledResult<R[]>).value);
}

function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}
