import type { Knex } from 'knex';

/** The sessions table: a meter's continuous printing sessions (dynamic passwords). */
export interface SessionRow {
  session_id: string;
  meter_id: string;
  wrapped_session_key: Buffer;
  counter: number;
  state: 'open' | 'ended';
  end_reason: string | null;
  last_seen_at: Date;
  timeout_ms: number;
  [column: string]: unknown;
}

/** The meter's session `sessionId`, every column; locked (FOR UPDATE) with `lock`. */
export async function sessionRow(db: Knex, sessionId: string, meterId: string, lock: boolean): Promise<SessionRow | undefined> {
  const q = db('sessions').where({ session_id: sessionId, meter_id: meterId });
  return (lock ? q.forUpdate() : q).first();
}

/** Ends the session if it is open. */
export async function endOpenSession(db: Knex, sessionId: string, reason: string): Promise<void> {
  await db('sessions').where({ session_id: sessionId, state: 'open' }).update({ state: 'ended', end_reason: reason });
}

/** A session opened at `at`. */
export async function insertSession(trx: Knex.Transaction, row: {
  sessionId: string; meterId: string; moduleSerial: string; wrappedSessionKey: Buffer | undefined; heartbeatMs: number; timeoutMs: number; openedAt: Date; lastSeenAt: Date;
}): Promise<void> {
  await trx('sessions').insert({
    session_id: row.sessionId, meter_id: row.meterId, module_serial: row.moduleSerial, wrapped_session_key: row.wrappedSessionKey,
    heartbeat_ms: row.heartbeatMs, timeout_ms: row.timeoutMs, opened_at: row.openedAt, last_seen_at: row.lastSeenAt, state: 'open',
  });
}

/** The session closed by its client. */
export async function closeSessionByClient(trx: Knex.Transaction, sessionId: string): Promise<void> {
  await trx('sessions').where({ session_id: sessionId }).update({ state: 'closed', end_reason: 'closed by the client' });
}

/** An open session's counter raised to `counter` (only upwards), last seen `at`; the rows updated (0 or 1). */
export async function raiseSessionCounter(db: Knex, sessionId: string, counter: number, at: Date): Promise<number> {
  return db('sessions').where({ session_id: sessionId, state: 'open' }).where('counter', '<', counter)
    .update({ counter, last_seen_at: at });
}
