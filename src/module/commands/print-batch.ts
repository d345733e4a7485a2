import { VbiError } from '../../errors';
import { PsdPackage } from '../../psd/psd-package';
import { dynamicPasswordInput, Receipt, receiptSignedBytes } from '../../protocol/messages';
import { ModuleTotals } from '../checkpoint';
import { createIndicium, Mailpiece, PrintedIndicium } from './create-indicium';
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
 * envelope (operational()): for each item, while the session is live, the item's dynamic
 * password is verified with the HMK inside the token, the postage debited, the indicium signed
 * and encrypted to the session key inside the token, and a receipt signed; the package is sealed
 * once, after the last item. Items get the record counter's next values (their receipts'
 * `sequence`, in order); the authorisation's receipt comes after them.
 *
 * A refused item (INSUFFICIENT_FUNDS, a refusal from `refused`) fails alone: the package is as
 * before it. A bad dynamic password or a session found over (`live` answers a code) voids that
 * item and every later one; nothing is debited for them. Results go to `holder.results`
 * (the operational result itself stays what the client MACs).
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
    const results: BatchItemResult[] = [];
    let cur: PsdPackage = pkg;
    let ended: string | null = null;
    let amount = 0;
    const totals: Partial<ModuleTotals> = {};
    const items = req.items();
    for (let index = 0; index < items.length; index++) {
      const { item, mailpiece, refused } = items[index];
      ended ??= await req.live(index);
      if (ended) {
        results.push({ index, status: 'voided', reason: ended });
        continue;
      }
      if (refused) {
        results.push({ index, status: 'failed', reason: refused });
        continue;
      }
      const dp = dynamicPasswordInput({
        meterId: pkg.meterId, sessionId: req.sessionId, counter: item.counter, clientTime: item.clientTime,
        purpose: 'print', destinationZip: item.destinationZip, postage: item.postage,
      });
      if (!(await keys.verifyHmac({ keyChain: ctx.hmkChain, data: dp, mac: item.dynamicPassword }))) {
        ended = 'BAD_DYNAMIC_PASSWORD';
        results.push({ index, status: 'voided', reason: ended });
        continue;
      }
      let out;
      try {
        out = await createIndicium({ postage: item.postage, mailpiece, type: req.type })(cur, ctx);
      } catch (e) {
        if (!(e instanceof VbiError) || e.kind !== 'user') throw e;
        results.push({ index, status: 'failed', reason: e.code });
        continue;
      }
      const encryptedIndicium = await keys.encryptWithKeyChain({
        keyChain: [ctx.usk, sessionKey], plaintext: out.result.indicium, aad: indiciumAad(req.sessionId, item.counter),
      });
      const unsigned: Omit<Receipt, 'signature'> = {
        meterId: pkg.meterId, op: req.type === 'correction' ? 'correction' : 'print', amount: item.postage,
        ascendingRegister: out.package.ascendingRegister, descendingRegister: out.package.descendingRegister,
        sequence: out.result.sequence, time: new Date(ctx.now).toISOString(), moduleSerial: ctx.hsm.serial, checkpointSeq: ctx.checkpointSeq,
      };
      const receipt: Receipt = { ...unsigned, signature: (await ctx.hsm.identitySign(receiptSignedBytes(unsigned))).toString('base64') };
      results.push({ index, status: 'printed', printed: { ...out.result, encryptedIndicium, receipt } });
      // the next item (and the authorisation's receipt) take the following record counter values
      cur = { ...out.package, recordCounter: out.result.sequence };
      amount += item.postage;
      for (const [k, v] of Object.entries(out.totals ?? {})) totals[k as keyof ModuleTotals] = (totals[k as keyof ModuleTotals] ?? 0) + (v as number);
    }
    req.holder.results = results;
    return { package: cur, type: amount > 0 ? req.type : 'inquiry', amount, totals, result: {} };
  };
}
