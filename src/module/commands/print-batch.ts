import { VbiError } from '../../errors';
import { PsdPackage } from '../../psd/psd-package';
import { dynamicPasswordInput, Receipt, receiptSignedBytes } from '../../protocol/messages';
import { Mailpiece, PlannedIndicium, PrintedIndicium, planIndicium, signPlanned } from './create-indicium';
import { registersOf } from './guards';
import type { KeyScope } from '../../hsm/hsm-module';
import { Operation } from './operational';
import { indiciumAad, SessionItem } from './print-item';

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
 * to the session key inside the token, and a receipt signed; the package is sealed once, after
 * the last item. Items get the record counter's next values (their receipts' `sequence`, in
 * order); the authorisation's receipt comes after them.
 *
 * A refused item (INSUFFICIENT_FUNDS, a field the indicium cannot carry, a refusal from
 * `refused`) fails alone: the package is as before it. A bad dynamic password or a session found
 * over (`live` answers a code) voids that item and every later one; nothing is debited for them.
 * Results go to `holder.results` (the operational result itself stays what the client MACs).
 *
 * The token work runs in three steps so that it overlaps: (1) the dynamic passwords, in order,
 * up to the first bad one; (2) in order and without the token, what becomes of each item and the
 * registers and fields of each indicium; (3) the signatures (in a key scope of their own when
 * there are several), each indicium's encryption as soon as it is signed, and the receipts (with
 * the identity key), side by side. Every token error fails the whole request, as before.
 */
export function printBatch(req: {
  sessionId: string;
  wrappedSessionKey: () => Buffer;
  items: () => BatchItem[];
  type: 'indicium' | 'correction';
  /** Called before each item: a code if the session is over by now (the host's clock), else null. */
  live: (index: number) => Promise<string | null>;
  holder: { results?: BatchItemResult[] };
}): Operation<Record<string, unknown>> {
  return async (pkg, ctx) => {
    const sessionKey = { wrapped: req.wrappedSessionKey(), usage: 'encrypt' as const };
    // the request's key scope: the HMK, the session key and the indicium key are unwrapped once
    const keys = ctx.keys ?? ctx.hsm;
    const items = req.items();

    // (1) dynamic passwords, in order; after the first bad one the rest are voided anyway
    const passwordOk: boolean[] = [];
    for (const [index, { item, refused }] of items.entries()) {
      if (refused) continue;
      const dp = dynamicPasswordInput({
        meterId: pkg.meterId, sessionId: req.sessionId, counter: item.counter, clientTime: item.clientTime,
        purpose: 'print', destinationZip: item.destinationZip, postage: item.postage,
      });
      passwordOk[index] = await keys.verifyHmac({ keyChain: ctx.hmkChain, data: dp, mac: item.dynamicPassword });
      if (!passwordOk[index]) break;
    }

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
      // the next item (and the authorisation's receipt) take the following record counter values
      cur = { ...plan.next, recordCounter: plan.sequence };
      amount += item.postage;
    }

    // (3) signatures, encryptions and receipts side by side
    const wrappedKey = pkg.secrets.wrappedIndiciumKey;
    const printed = await (planned.length > 1 ? ctx.hsm.withKeys((signer) => finish(signer)) : finish(keys));
    for (const [i, p] of planned.entries()) results[p.index] = { index: p.index, status: 'printed', printed: printed[i] };
    req.holder.results = results;
    return { package: cur, type: amount > 0 ? req.type : 'inquiry', amount, totals: { printed: amount }, result: {} };

    async function finish(signer: Pick<KeyScope, 'signWithWrappedKey'>): Promise<Array<NonNullable<BatchItemResult['printed']>>> {
      // One chain of calls per token session (calls on a key scope must not overlap): with a
      // signer scope of its own the indicia are signed in one chain while the request's scope
      // encrypts each one and signs its receipt in the other; on one scope, one chain does all.
      // The dispatch holds at most two sessions, whatever the pool size.
      const sign = (p: Planned) => signPlanned(p.plan, wrappedKey, signer);
      const signed = signer === keys ? undefined : chain(planned, sign);
      const done = chain(planned, async (p, i) => {
        const s = signed ? await signed[i] : await sign(p);
        const encryptedIndicium = await keys.encryptWithKeyChain({ keyChain: [ctx.usk, sessionKey], plaintext: s.indicium, aad: indiciumAad(req.sessionId, p.counter) });
        const unsigned: Omit<Receipt, 'signature'> = {
          meterId: pkg.meterId, op: req.type === 'correction' ? 'correction' : 'print', amount: p.postage,
          ascendingRegister: p.plan.next.ascendingRegister, descendingRegister: p.plan.next.descendingRegister,
          sequence: p.plan.sequence, time: new Date(ctx.now).toISOString(), moduleSerial: ctx.hsm.serial, checkpointSeq: ctx.checkpointSeq,
        };
        const receipt: Receipt = { ...unsigned, signature: (await keys.identitySign(receiptSignedBytes(unsigned))).toString('base64') };
        return { ...registersOf(p.plan.next), ...s, sequence: p.plan.sequence, postage: p.postage, encryptedIndicium, receipt };
      });
      // nothing may still run on a session when its scope closes: every call settles first
      const settled = await Promise.allSettled([...(signed ?? []), ...done]);
      const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      return Promise.all(done);
    }
  };
}

/** `p`, with its rejection marked handled (the caller awaits it later, or knows it failed). */
function quiet<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

/**
 * Runs `fn` over `list` one call after the other (one token session), starting at once; the
 * i-th promise is the i-th result. A failure fails the rest of the chain; no rejection is left
 * unhandled (the caller awaits the results it needs).
 */
function chain<T, R>(list: T[], fn: (x: T, i: number) => Promise<R>): Array<Promise<R>> {
  const out: Array<Promise<R>> = [];
  let prev: Promise<unknown> = Promise.resolve();
  for (const [i, x] of list.entries()) {
    const p = quiet(prev.then(() => fn(x, i)));
    out.push(p);
    prev = p;
  }
  return out;
}
