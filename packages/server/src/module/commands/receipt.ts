import type { Operation, Receipt } from '@vbi/core/protocol/messages';
import type { CommandContext } from '../psd-engine';

/** A receipt before its signature: the fields receiptSignedBytes covers (WO 99/41690). */
export type UnsignedReceipt = Omit<Receipt, 'signature' | 'batch'>;

/**
 * The fields of a receipt this module issues now: what happened to which meter, the registers
 * after it and the record counter value it took. The signature comes from the caller: one
 * identity-key signature for a single receipt, or one over the root of a print request's
 * receipt tree (packages/core/src/protocol/receipt-batch.ts).
 */
export function receiptFields(ctx: Pick<CommandContext, 'hsm' | 'now' | 'checkpointSeq'>, r: {
  meterId: string; op: Operation; amount: number; ascendingRegister: number; descendingRegister: number; sequence: number;
}): UnsignedReceipt {
  return {
    meterId: r.meterId, op: r.op, amount: r.amount,
    ascendingRegister: r.ascendingRegister, descendingRegister: r.descendingRegister,
    sequence: r.sequence, time: new Date(ctx.now).toISOString(),
    moduleSerial: ctx.hsm.serial, checkpointSeq: ctx.checkpointSeq,
  };
}
