import type { Knex } from 'knex';

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
