import { MASTER_PSD_ID } from '../module/commands/master-psd';
import type { Knex } from 'knex';
import {
  appliedPayments, downloadsSum, meterMovementsBefore, meterRowDrift, newestRecordsBefore, poolRow, postagePrinted, printRecordsWithIndicia,
  purchasesSum, pvdRecordOf, pvdRecords, refundsSum, uncapturedPayments, unpaidRefunds,
} from '../db/repositories/reconciliation';
import { dayBounds } from './daily-report';

/**
 * The reconciliation report (docs/reports.md): the independent records of the money tied
 * together at the end of one UTC day, and every difference listed —
 *  - each print record of the day against its indicium rows (postage adds up to the record);
 *  - each PVD of the day against the payment it applied, and each payment applied that day
 *    against a PVD record and its capture at the processor;
 *  - each refund of the day against its payout through the processor;
 *  - per meter, at its newest record up to the day's end: AR + DR = downloaded − refunded;
 *  - the pool: stock bought from the post − downloads + full refunds (the pool's balance by its
 *    movements), and purchases − partial refunds paid = pool + all meters' AR + DR;
 *  - now (when the report is made): the pool row and each meter row against what the journal says.
 * Money in integer mills.
 */
export interface Reconciliation {
  date: string;
  endOfDay: {
    purchased: number; downloaded: number; refundedPartial: number; refundedFull: number;
    poolAvailable: number; metersAscending: number; metersDescending: number;
    paymentsApplied: number; printed: number;
  };
  differences: string[];
}

export async function reconcile(db: Knex, date: string): Promise<Reconciliation> {
  const { from, to } = dayBounds(date);
  const differences: string[] = [];
  const n = (v: unknown) => Number(v ?? 0);

  // print records of the day against their indicium rows
  const prints = await printRecordsWithIndicia(db, from, to);
  for (const p of prints) {
    if (n(p.postage) !== n(p.amount)) differences.push(`print record ${p.module_serial}#${p.checkpoint_seq} (meter ${p.meter_id}): ${n(p.amount)} mills, its ${n(p.n)} indicium row(s) ${n(p.postage)}`);
  }

  // PVDs of the day against payments
  const pvds = await pvdRecords(db, from, to);
  const applied = await appliedPayments(db);
  const paymentOf = new Map(applied.map((p) => [`${p.meter_id}#${p.applied_checkpoint_seq}`, p]));
  let paymentsApplied = 0;
  const matched = new Set<number>();
  for (const v of pvds) {
    const p = paymentOf.get(`${v.meter_id}#${v.checkpoint_seq}`);
    if (!p) differences.push(`PVD ${v.module_serial}#${v.checkpoint_seq} (meter ${v.meter_id}, ${n(v.amount)} mills) applied no payment (a vendor download)`);
    else {
      matched.add(Number(p.payment_id));
      paymentsApplied += n(p.amount);
      if (n(p.amount) !== n(v.amount)) differences.push(`PVD ${v.module_serial}#${v.checkpoint_seq} (meter ${v.meter_id}): ${n(v.amount)} mills, its payment ${p.payment_id} ${n(p.amount)}`);
    }
  }
  const uncaptured = await uncapturedPayments(db, from, to);
  for (const p of uncaptured) differences.push(`payment ${p.payment_id} (meter ${p.meter_id}, ${n(p.amount)} mills) is applied but not captured at the processor yet`);
  for (const p of applied) {
    const at = p.updated_at;
    if (at >= from && at < to && !matched.has(Number(p.payment_id))) {
      const rec = await pvdRecordOf(db, p.meter_id, p.applied_checkpoint_seq);
      if (!rec) differences.push(`payment ${p.payment_id} (meter ${p.meter_id}, ${n(p.amount)} mills) is marked applied but no PVD record of the meter has sequence ${p.applied_checkpoint_seq}`);
    }
  }

  // refunds of the day not paid back through the processor
  const unpaid = await unpaidRefunds(db, from, to);
  for (const r of unpaid) {
    differences.push(r.payout_status === 'due'
      ? `refund ${r.refund_id} (meter ${r.meter_id}, ${n(r.amount)} mills) is not paid back yet (the payout pass retries)`
      : `refund ${r.refund_id} (meter ${r.meter_id}, ${n(r.amount)} mills): ${n(r.paid)} paid back through the processor, ${n(r.amount) - n(r.paid)} to pay by hand`);
  }

  // per meter at the end of the day: AR + DR = downloaded − refunded
  const meters = await meterMovementsBefore(db, to, MASTER_PSD_ID);
  const newest = await newestRecordsBefore(db, to);
  // (the master PSD's newest record is in `newest` too: the pool is checked against it below)
  const last = new Map(newest.map((r) => [r.meter_id, r]));
  let metersAscending = 0;
  let metersDescending = 0;
  for (const m of meters) {
    const l = last.get(m.meter_id)!;
    metersAscending += n(l.ascending_register);
    metersDescending += n(l.descending_register);
    if (n(l.ascending_register) + n(l.descending_register) !== n(m.downloaded) - n(m.refunded)) {
      differences.push(`meter ${m.meter_id}: AR + DR = ${n(l.ascending_register) + n(l.descending_register)} at its last record of the day, downloaded − refunded = ${n(m.downloaded) - n(m.refunded)}`);
    }
  }

  // the pool by its movements up to the end of the day
  const purchased = n(await purchasesSum(db, to));
  const downloaded = n(await downloadsSum(db, to));
  const refundedPartial = n(await refundsSum(db, 'partial', to));
  const refundedFull = n(await refundsSum(db, 'full', to));
  const printed = n(await postagePrinted(db, from, to));
  const poolAvailable = purchased - downloaded + refundedFull;
  if (poolAvailable < 0) differences.push(`the pool's movements leave ${poolAvailable} mills: downloads exceed the stock bought from the post`);
  const master = newest.find((r) => r.meter_id === MASTER_PSD_ID);
  if (master && n(master.descending_register) !== poolAvailable) {
    differences.push(`the master PSD's last record of the day holds ${n(master.descending_register)} mills available, the pool's movements leave ${poolAvailable}`);
  }
  if (purchased - refundedPartial !== poolAvailable + metersAscending + metersDescending) {
    differences.push(`bought − refunds paid = ${purchased - refundedPartial}, pool + meters' AR + DR = ${poolAvailable + metersAscending + metersDescending}`);
  }

  // now: the tables' current copies against the journal
  const pool = await poolRow(db);
  const purchasedNow = n(await purchasesSum(db));
  if (n(pool.purchased) !== purchasedNow) differences.push(`now: the pool row says ${n(pool.purchased)} mills bought, its purchases add up to ${purchasedNow}`);
  const drift = await meterRowDrift(db);
  for (const d of drift) differences.push(`now: meter ${d.meter_id} row holds AR ${d.ascending_register}, DR ${d.descending_register}; its newest record AR ${d.jar}, DR ${d.jdr}`);

  return {
    date,
    endOfDay: { purchased, downloaded, refundedPartial, refundedFull, poolAvailable, metersAscending, metersDescending, paymentsApplied, printed },
    differences,
  };
}
