import { MASTER_PSD_ID } from '../module/commands/master-psd';
import type { Knex } from 'knex';
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
  const prints = await db('journal as j').whereIn('j.tx_type', ['indicium', 'correction']).andWhere('j.created_at', '>=', from).andWhere('j.created_at', '<', to)
    .leftJoin(db('indicia').select('module_serial', 'checkpoint_seq').sum({ postage: 'postage' }).count({ n: '*' }).groupBy('module_serial', 'checkpoint_seq').as('i'),
      function join() { this.on('i.module_serial', 'j.module_serial').andOn('i.checkpoint_seq', 'j.checkpoint_seq'); })
    .select('j.meter_id', 'j.module_serial', 'j.checkpoint_seq', 'j.amount', 'i.postage', 'i.n');
  for (const p of prints) {
    if (n(p.postage) !== n(p.amount)) differences.push(`print record ${p.module_serial}#${p.checkpoint_seq} (meter ${p.meter_id}): ${n(p.amount)} mills, its ${n(p.n)} indicium row(s) ${n(p.postage)}`);
  }

  // PVDs of the day against payments
  const pvds = await db('journal').where({ tx_type: 'pvd' }).andWhere('created_at', '>=', from).andWhere('created_at', '<', to)
    .select('meter_id', 'module_serial', 'checkpoint_seq', 'amount');
  const applied = await db('payments').where({ status: 'applied' }).whereNotNull('applied_checkpoint_seq').select('payment_id', 'meter_id', 'amount', 'applied_checkpoint_seq', 'updated_at');
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
  const uncaptured = await db('payments').where({ status: 'applied' }).whereNull('captured_at').andWhere('updated_at', '>=', from).andWhere('updated_at', '<', to).select('payment_id', 'meter_id', 'amount');
  for (const p of uncaptured) differences.push(`payment ${p.payment_id} (meter ${p.meter_id}, ${n(p.amount)} mills) is applied but not captured at the processor yet`);
  for (const p of applied) {
    const at = p.updated_at as Date;
    if (at >= from && at < to && !matched.has(Number(p.payment_id))) {
      const rec = await db('journal').where({ meter_id: p.meter_id, tx_type: 'pvd', checkpoint_seq: p.applied_checkpoint_seq }).first('created_at');
      if (!rec) differences.push(`payment ${p.payment_id} (meter ${p.meter_id}, ${n(p.amount)} mills) is marked applied but no PVD record of the meter has sequence ${p.applied_checkpoint_seq}`);
    }
  }

  // refunds of the day not paid back through the processor
  const unpaid = await db('refunds as r').whereNot('r.payout_status', 'paid').andWhere('r.created_at', '>=', from).andWhere('r.created_at', '<', to).andWhere('r.amount', '>', 0)
    .select('r.refund_id', 'r.meter_id', 'r.amount', 'r.payout_status',
      db.raw('(SELECT coalesce(sum(o.amount), 0) FROM refund_payouts o WHERE o.refund_id = r.refund_id AND o.payout_ref IS NOT NULL) AS paid'));
  for (const r of unpaid) {
    differences.push(r.payout_status === 'due'
      ? `refund ${r.refund_id} (meter ${r.meter_id}, ${n(r.amount)} mills) is not paid back yet (the payout pass retries)`
      : `refund ${r.refund_id} (meter ${r.meter_id}, ${n(r.amount)} mills): ${n(r.paid)} paid back through the processor, ${n(r.amount) - n(r.paid)} to pay by hand`);
  }

  // per meter at the end of the day: AR + DR = downloaded − refunded
  const meters: Array<{ meter_id: string; downloaded: string; refunded: string }> = await db('journal').where('created_at', '<', to).whereNotIn('meter_id', ['', MASTER_PSD_ID]).groupBy('meter_id').select('meter_id')
    .sum({ downloaded: db.raw("CASE WHEN tx_type = 'pvd' THEN amount ELSE 0 END") })
    .sum({ refunded: db.raw("CASE WHEN tx_type = 'refund' THEN amount ELSE 0 END") }) as never;
  const newest = await db.raw(
    `SELECT DISTINCT ON (meter_id) meter_id, ascending_register, descending_register, module_serial, checkpoint_seq
       FROM journal WHERE created_at < ? AND meter_id <> '' ORDER BY meter_id, created_at DESC, checkpoint_seq DESC`, [to]);
  // (the master PSD's newest record is in `newest` too: the pool is checked against it below)
  const last = new Map<string, { ascending_register: string; descending_register: string }>(newest.rows.map((r: { meter_id: string }) => [r.meter_id, r]));
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
  const sumWhere = async (q: Knex.QueryBuilder) => n((await q.sum({ s: 'amount' }).first())?.s);
  const purchased = await sumWhere(db('pool_purchases').where('created_at', '<', to));
  const downloaded = await sumWhere(db('journal').where({ tx_type: 'pvd' }).andWhere('created_at', '<', to));
  const refundedPartial = await sumWhere(db('refunds').where({ kind: 'partial' }).andWhere('created_at', '<', to));
  const refundedFull = await sumWhere(db('refunds').where({ kind: 'full' }).andWhere('created_at', '<', to));
  const printed = n((await db('indicia').where('created_at', '>=', from).andWhere('created_at', '<', to).sum({ s: 'postage' }).first())?.s);
  const poolAvailable = purchased - downloaded + refundedFull;
  if (poolAvailable < 0) differences.push(`the pool's movements leave ${poolAvailable} mills: downloads exceed the stock bought from the post`);
  const master = newest.rows.find((r: { meter_id: string }) => r.meter_id === MASTER_PSD_ID);
  if (master && n(master.descending_register) !== poolAvailable) {
    differences.push(`the master PSD's last record of the day holds ${n(master.descending_register)} mills available, the pool's movements leave ${poolAvailable}`);
  }
  if (purchased - refundedPartial !== poolAvailable + metersAscending + metersDescending) {
    differences.push(`bought − refunds paid = ${purchased - refundedPartial}, pool + meters' AR + DR = ${poolAvailable + metersAscending + metersDescending}`);
  }

  // now: the tables' current copies against the journal
  const pool = await db('pool').where({ pool_id: 1 }).first();
  const purchasedNow = await sumWhere(db('pool_purchases'));
  if (n(pool.purchased) !== purchasedNow) differences.push(`now: the pool row says ${n(pool.purchased)} mills bought, its purchases add up to ${purchasedNow}`);
  const drift = await db.raw(
    `SELECT m.meter_id, m.ascending_register, m.descending_register, j.ascending_register AS jar, j.descending_register AS jdr
       FROM meters m JOIN LATERAL (SELECT ascending_register, descending_register FROM journal WHERE meter_id = m.meter_id ORDER BY journal_id DESC LIMIT 1) j ON true
      WHERE m.ascending_register <> j.ascending_register OR m.descending_register <> j.descending_register`);
  for (const d of drift.rows) differences.push(`now: meter ${d.meter_id} row holds AR ${d.ascending_register}, DR ${d.descending_register}; its newest record AR ${d.jar}, DR ${d.jdr}`);

  return {
    date,
    endOfDay: { purchased, downloaded, refundedPartial, refundedFull, poolAvailable, metersAscending, metersDescending, paymentsApplied, printed },
    differences,
  };
}
