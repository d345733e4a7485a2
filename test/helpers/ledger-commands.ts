import { vbiError } from '@vbi/core/errors';
import { Ledger } from '@vbi/server/ledger/ledger';
import { assertMills } from '@vbi/core/protocol/amounts';
import { recordRefund } from '@vbi/server/ledger/refund-rows';
import { CommandContext, CommandOutcome } from '@vbi/server/module/psd-engine';
import { PsdPackage } from '@vbi/core/psd/psd-package';
import { Mailpiece, PrintedIndicium, planIndicium, signPlanned } from '@vbi/server/module/commands/create-indicium';
import { Registers, registersOf } from '@vbi/server/module/commands/guards';
import { fullRefund, partialRefund } from '@vbi/server/module/commands/refund';

/*
 * One-command prints and refunds run straight through the transaction engine (Ledger.run), for
 * the engine's own tests: the rollback attacks, crashes and tampering need a package-changing
 * command and nothing else of the mailer protocol. They use the module's indicium and refund
 * commands (packages/server/src/module/commands/) as the print and refund requests do; what a mailer's request
 * adds (envelope, session, dynamic passwords, batch rows) is tested through HTTP elsewhere.
 */

/** One indicium (or correction) for `postage`, signed in the module; its row written in the command's transaction. */
function oneIndicium(req: { postage: number; mailpiece: Mailpiece; type: 'indicium' | 'correction' }) {
  return async (opened: PsdPackage | null, ctx: CommandContext): Promise<CommandOutcome<PrintedIndicium>> => {
    const plan = planIndicium(opened, req, ctx.now);
    const signed = await signPlanned(plan, plan.next.secrets.wrappedIndiciumKey, ctx.keys ?? ctx.hsm);
    return {
      package: plan.next, type: req.type, amount: req.postage, totals: { printed: req.postage },
      result: { ...registersOf(plan.next), ...signed, sequence: plan.sequence, postage: req.postage },
    };
  };
}

async function printOne(ledger: Ledger, req: { meterId: string; postage: number; kind: 'postage' | 'correction'; corrects?: number; mailpiece: Mailpiece }): Promise<PrintedIndicium & { indiciumId: number }> {
  let indiciumId = 0;
  const out = await ledger.run({
    meterId: req.meterId, type: req.kind === 'postage' ? 'indicium' : 'correction',
    execute: oneIndicium({ postage: req.postage, mailpiece: req.mailpiece, type: req.kind === 'postage' ? 'indicium' : 'correction' }),
    before: async (trx) => {
      if (req.corrects === undefined) return;
      const original = await trx('indicia').where({ indicium_id: req.corrects, meter_id: req.meterId }).first('indicium_id');
      if (!original) throw vbiError('UNKNOWN_INDICIUM', `meter ${req.meterId} has no indicium ${req.corrects}`);
    },
    after: async (trx, o, at) => {
      const [row] = await trx('indicia').insert({
        meter_id: req.meterId, sequence: o.result.sequence, kind: req.kind, postage: req.postage, corrects: req.corrects ?? null,
        data: o.result.data, signature: o.result.signature, module_serial: o.record.moduleSerial,
        checkpoint_seq: o.record.seq, created_at: at,
      }).returning('indicium_id');
      indiciumId = row.indicium_id;
    },
    details: (o) => ({ postage: req.postage, kind: req.kind, corrects: req.corrects ?? null, sequence: o.result.sequence, indicium: o.result.indicium.toString('base64') }),
  });
  return { ...out.result, indiciumId };
}

/** CreateIndicium: debit DR, credit AR, indicium signed in the module; returned only after COMMIT and the ring append. */
export async function createIndicium(ledger: Ledger, req: { meterId: string; postage: number; mailpiece: Mailpiece }): Promise<PrintedIndicium & { indiciumId: number }> {
  return printOne(ledger, { meterId: req.meterId, postage: assertMills(req.postage, 'postage'), kind: 'postage', mailpiece: req.mailpiece });
}

/** A correction indicium (WO 99/41690) for the additional postage, referencing the original. */
export async function correction(ledger: Ledger, req: { meterId: string; originalIndiciumId: number; additionalPostage: number; mailpiece: Mailpiece }): Promise<PrintedIndicium & { indiciumId: number }> {
  const postage = assertMills(req.additionalPostage, 'additionalPostage', { allowZero: true });
  if (!Number.isSafeInteger(req.originalIndiciumId)) throw vbiError('BAD_REQUEST', 'originalIndiciumId must be an integer');
  return printOne(ledger, { meterId: req.meterId, postage, kind: 'correction', corrects: req.originalIndiciumId, mailpiece: req.mailpiece });
}

/** Partial (spoilage, within `spoilageLimitBps` of AR, default 1%) or full refund. */
export async function refund(ledger: Ledger, req: { meterId: string; kind: 'partial' | 'full'; amount?: number; reason: string; spoilageLimitBps?: number }): Promise<Registers & { refunded: number }> {
  if (req.kind !== 'partial' && req.kind !== 'full') throw vbiError('BAD_REQUEST', "refund kind must be 'partial' or 'full'");
  if (req.kind === 'partial') {
    const amount = assertMills(req.amount);
    const out = await ledger.run({
      meterId: req.meterId, type: 'refund', execute: partialRefund({ amount, spoilageLimitBps: req.spoilageLimitBps ?? 100 }),
      pool: () => ({ kind: 'payout', amount, meterId: req.meterId }),
      after: async (trx, o, at) => { await recordRefund(trx, { meterId: req.meterId, kind: 'partial', amount, reason: req.reason, record: o.record, at }); },
      details: () => ({ kind: 'partial', amount, reason: req.reason }),
    });
    return { ...out.result, refunded: amount };
  }
  const out = await ledger.run({
    meterId: req.meterId, type: 'refund', execute: fullRefund(),
    pool: (o) => ({ kind: 'return', amount: o.result.refunded, meterId: req.meterId }),
    after: async (trx, o, at) => { await recordRefund(trx, { meterId: req.meterId, kind: 'full', amount: o.result.refunded, reason: req.reason, record: o.record, at }); },
    details: (o) => ({ kind: 'full', amount: o.result.refunded, reason: req.reason }),
  });
  return out.result;
}
