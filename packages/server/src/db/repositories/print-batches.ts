import type { Knex } from 'knex';

/** The print_batches table, with the indicia and the session a batch writes and reads. */

/** The rows of one print (or correction) request, written in the request's transaction. */
export interface PrintBatchRows {
  batch: {
    batchId: string; meterId: string; kind: 'print' | 'correction'; idempotencyKey: string | null; sessionId: string; items: number;
    /** The authorisation as answered (sent again to a retry). */
    answer: unknown;
    /** Items not printed, by index: voided or failed, and why. */
    outcomes: Record<string, unknown>;
  };
  printed: Array<{
    index: number; sequence: number; postage: number; data: Buffer; signature: Buffer; counter: number; encryptedIndicium: Buffer; receipt: unknown;
  }>;
  /** What every printed indicium of the request shares. */
  indicium: { kind: 'postage' | 'correction'; corrects: number | null; moduleSerial: string; checkpointSeq: number; at: Date };
  session: {
    /** The highest counter printed (null: nothing printed, counter and last seen stay). */
    counter: number | null;
    lastSeenAt: Date;
    /** The session ended during the request (an item voided), and why. */
    end: { reason: string | null } | null;
  };
}

/**
 * The batch row, its indicia and the session's counter (or its end) in one statement: one round
 * trip on the print path. Returns each printed item's indicium id by item index.
 */
export async function storePrintBatch(trx: Knex.Transaction, rows: PrintBatchRows): Promise<Map<number, number>> {
  const { batch: b, printed: p, indicium: i, session: s } = rows;
  const r = await trx.raw(
    `WITH b AS (INSERT INTO print_batches (batch_id, meter_id, kind, idempotency_key, session_id, items, answer, outcomes)
                VALUES (?, ?, ?, ?, ?, ?, ?::jsonb, ?::jsonb) RETURNING batch_id),
          s AS (UPDATE sessions
                   SET counter = CASE WHEN ?::bigint IS NULL THEN counter ELSE ?::bigint END,
                       last_seen_at = CASE WHEN ?::bigint IS NULL THEN last_seen_at ELSE ?::timestamptz END,
                       state = CASE WHEN ?::boolean THEN 'ended' ELSE state END,
                       end_reason = CASE WHEN ?::boolean THEN ?::text ELSE end_reason END
                 WHERE session_id = ? AND (?::bigint IS NOT NULL OR ?::boolean) RETURNING 1)
     INSERT INTO indicia (meter_id, sequence, kind, postage, corrects, data, signature, module_serial, checkpoint_seq, created_at,
                          batch_id, item_index, counter, encrypted_indicium, receipt)
     SELECT ?, u.sequence, ?, u.postage, ?::bigint, u.data, u.signature, ?, ?, ?::timestamptz, (SELECT batch_id FROM b), u.item_index, u.counter,
            u.encrypted, u.receipt::jsonb
       FROM unnest(?::bigint[], ?::bigint[], ?::bytea[], ?::bytea[], ?::int[], ?::bigint[], ?::bytea[], ?::text[])
            AS u(sequence, postage, data, signature, item_index, counter, encrypted, receipt)
     RETURNING indicium_id, item_index`,
    [
      b.batchId, b.meterId, b.kind, b.idempotencyKey, b.sessionId, b.items, JSON.stringify(b.answer), JSON.stringify(b.outcomes),
      s.counter, s.counter, s.counter, s.lastSeenAt, s.end !== null, s.end !== null, s.end?.reason ?? null, b.sessionId, s.counter, s.end !== null,
      b.meterId, i.kind, i.corrects, i.moduleSerial, i.checkpointSeq, i.at,
      p.map((x) => x.sequence), p.map((x) => x.postage), p.map((x) => x.data), p.map((x) => x.signature), p.map((x) => x.index),
      p.map((x) => x.counter), p.map((x) => x.encryptedIndicium), p.map((x) => JSON.stringify(x.receipt)),
    ]);
  return new Map((r.rows as Array<{ indicium_id: number; item_index: number }>).map((x) => [x.item_index, Number(x.indicium_id)]));
}

/** The newest batch of a meter's request (kind, Idempotency-Key) created at or after `since`. */
export async function priorBatch<A, O>(db: Knex, req: { meterId: string; kind: 'print' | 'correction'; idempotencyKey: string; since: Date }): Promise<{ batch_id: string; answer: A; outcomes: O; items: number } | undefined> {
  return db('print_batches').where({ meter_id: req.meterId, kind: req.kind, idempotency_key: req.idempotencyKey })
    .where('created_at', '>=', req.since).orderBy('created_at', 'desc').first('batch_id', 'answer', 'outcomes', 'items');
}

/** The indicia a batch printed. */
export async function indiciaOfBatch<R>(db: Knex, batchId: string): Promise<Array<{ indicium_id: number | string; item_index: number; encrypted_indicium: Buffer; receipt: R }>> {
  return db('indicia').where({ batch_id: batchId }).select('indicium_id', 'item_index', 'encrypted_indicium', 'receipt');
}

/** Whether the meter has the indicium (its id when it does). */
export async function indiciumOfMeter(trx: Knex.Transaction, indiciumId: number, meterId: string): Promise<{ indicium_id: number } | undefined> {
  return trx('indicia').where({ indicium_id: indiciumId, meter_id: meterId }).first('indicium_id');
}

export interface StoredIndiciumRow<R> {
  indicium_id: number | string; sequence: number | string; kind: 'postage' | 'correction'; postage: number | string; batch_id: string; item_index: number;
  data: Buffer; signature: Buffer; receipt: R;
}

/**
 * A meter's committed indicia (at most 500, by piece number) of one batch, of the batch of an
 * Idempotency-Key, or of a range of piece numbers.
 */
export async function indiciaToRedeliver<R>(trx: Knex.Transaction, meterId: string, select: { batchId?: string; idempotencyKey?: string; fromSequence?: number; toSequence?: number }): Promise<Array<StoredIndiciumRow<R>>> {
  const q = trx('indicia as i').where('i.meter_id', meterId);
  if (select.batchId !== undefined) q.where('i.batch_id', select.batchId);
  else if (select.idempotencyKey !== undefined) {
    q.whereIn('i.batch_id', trx('print_batches').where({ meter_id: meterId, idempotency_key: select.idempotencyKey }).select('batch_id'));
  } else q.whereBetween('i.sequence', [select.fromSequence!, select.toSequence!]);
  return q.orderBy('i.sequence').limit(500)
    .select('i.indicium_id', 'i.sequence', 'i.kind', 'i.postage', 'i.batch_id', 'i.item_index', 'i.data', 'i.signature', 'i.receipt');
}
