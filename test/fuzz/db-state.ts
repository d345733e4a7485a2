import type { Knex } from 'knex';

/**
 * Everything a rejected request could change (invariant 5), read in one query: for each meter the
 * fuzzer owns or aims at, the sealed package (as a digest), record counter, state, journal,
 * indicium and refund counts, payments, sessions and idempotency keys in its scope; and the
 * run-wide counts no rejected request may move (accounts, indicium sightings, fraud reports,
 * payments that took money, keys in foreign scopes, meters active without an account).
 */
export interface MeterState {
  package: string;
  recordCounter: number;
  state: string;
  account: number | null;
  journal: number;
  indicia: number;
  refunds: number;
  idempotencyKeys: number;
  /** [paymentId, status, amount] */
  payments: Array<[number, string, number]>;
  /** [sessionId, state, counter] */
  sessions: Array<[string, string, number]>;
}

export interface DbState {
  meters: Record<string, MeterState>;
  accounts: number;
  scans: number;
  fraudReports: number;
  /** Payments anywhere that are neither declined nor voided (money moved or about to). */
  livePayments: number;
  /** Idempotency keys whose scope is none of the owned meters. */
  foreignKeys: number;
  keysInProgress: number;
  /** Meters that are active, suspended or closed without an account (never handed out). */
  orphans: string[];
}

const STATE_SQL = `
SELECT json_build_object(
  'meters', (SELECT coalesce(json_object_agg(m.meter_id, json_build_object(
      'package', md5(m.package), 'recordCounter', m.record_counter, 'state', m.state, 'account', m.account_id,
      'journal', (SELECT count(*) FROM journal j WHERE j.meter_id = m.meter_id),
      'indicia', (SELECT count(*) FROM indicia i WHERE i.meter_id = m.meter_id),
      'refunds', (SELECT count(*) FROM refunds r WHERE r.meter_id = m.meter_id),
      'idempotencyKeys', (SELECT count(*) FROM idempotency_keys k WHERE k.scope = m.meter_id),
      'payments', (SELECT coalesce(json_agg(json_build_array(p.payment_id, p.status, p.amount) ORDER BY p.payment_id), '[]'::json) FROM payments p WHERE p.meter_id = m.meter_id),
      'sessions', (SELECT coalesce(json_agg(json_build_array(s.session_id, s.state, s.counter) ORDER BY s.session_id), '[]'::json) FROM sessions s WHERE s.meter_id = m.meter_id)
    )), '{}'::json) FROM meters m WHERE m.meter_id = ANY(?::text[])),
  'accounts', (SELECT count(*) FROM accounts),
  'scans', (SELECT count(*) FROM indicium_scans),
  'fraudReports', (SELECT count(*) FROM fraud_reports),
  'livePayments', (SELECT count(*) FROM payments WHERE status NOT IN ('declined', 'voided')),
  'foreignKeys', (SELECT count(*) FROM idempotency_keys WHERE NOT (scope = ANY(?::text[]))),
  'keysInProgress', (SELECT count(*) FROM idempotency_keys WHERE state = 'in_progress'),
  'orphans', (SELECT coalesce(json_agg(meter_id ORDER BY meter_id), '[]'::json) FROM meters WHERE account_id IS NULL AND state <> 'unassigned')
) AS s`;

export async function captureState(db: Knex, meterIds: readonly string[]): Promise<DbState> {
  const ids = [...meterIds];
  const r = await db.raw(STATE_SQL, [ids, ids]);
  return r.rows[0].s as DbState;
}

/** One difference between two states. */
export interface StateChange {
  meterId?: string;
  /** e.g. 'meters.package', 'sessions', 'accounts' */
  what: string;
  detail: string;
}

/** Changes a rejected request may legitimately cause, per the protocol. */
export interface Allowances {
  /** Sessions a bad dynamic password in this request may end (docs/protocol.md section 3). */
  mayEndSessions: ReadonlySet<string>;
  /** The meter whose HMK signed this request: its own refused requests keep their idempotency answer. */
  signedBy?: string;
  /**
   * The meter whose challenge a 2xx answer to this request may move (an accepted print
   * authorisation: package, record counter and journal record). Applied only to 2xx answers.
   */
  acceptedBy?: string;
}

const NO_ALLOWANCES: Allowances = { mayEndSessions: new Set() };

function sessionsChanged(meterId: string, before: MeterState['sessions'], after: MeterState['sessions'], allow: Allowances): StateChange[] {
  const out: StateChange[] = [];
  const old = new Map(before.map((s) => [s[0], s]));
  for (const s of after) {
    const o = old.get(s[0]);
    old.delete(s[0]);
    if (!o) {
      out.push({ meterId, what: 'sessions', detail: `session ${s[0]} was opened (${s[1]})` });
      continue;
    }
    if (o[1] === s[1] && o[2] === s[2]) continue;
    const ended = o[1] === 'open' && s[1] === 'ended' && o[2] === s[2] && allow.mayEndSessions.has(s[0]);
    if (!ended) out.push({ meterId, what: 'sessions', detail: `session ${s[0]}: ${o[1]}/counter ${o[2]} became ${s[1]}/counter ${s[2]}` });
  }
  for (const o of old.values()) out.push({ meterId, what: 'sessions', detail: `session ${o[0]} disappeared` });
  return out;
}

function paymentsChanged(meterId: string, before: MeterState['payments'], after: MeterState['payments']): StateChange[] {
  const out: StateChange[] = [];
  const old = new Map(before.map((p) => [p[0], p]));
  for (const p of after) {
    const o = old.get(p[0]);
    old.delete(p[0]);
    // a declined or voided attempt is bookkeeping, not money: it may be recorded
    if (!o) {
      if (p[1] !== 'declined' && p[1] !== 'voided') out.push({ meterId, what: 'payments', detail: `payment ${p[0]} of ${p[2]} mills was recorded as ${p[1]}` });
    } else if (o[1] !== p[1] || o[2] !== p[2]) {
      out.push({ meterId, what: 'payments', detail: `payment ${p[0]} went from ${o[1]} to ${p[1]}` });
    }
  }
  for (const o of old.values()) out.push({ meterId, what: 'payments', detail: `payment ${o[0]} disappeared` });
  return out;
}

/** What differs between `before` and `after`, less what `allow` permits. */
export function diffState(before: DbState, after: DbState, allow: Allowances = NO_ALLOWANCES): StateChange[] {
  const out: StateChange[] = [];
  for (const [id, b] of Object.entries(before.meters)) {
    const a = after.meters[id];
    if (!a) {
      out.push({ meterId: id, what: 'meters', detail: `meter ${id} disappeared` });
      continue;
    }
    if (allow.acceptedBy === id) {
      // an accepted authorisation: a new challenge (package), one record, one journal row; nothing else
      if (a.journal - b.journal > 1 || a.recordCounter - b.recordCounter > 1) out.push({ meterId: id, what: 'journal', detail: `an accepted request wrote ${a.journal - b.journal} journal rows for ${id}` });
    } else if (a.package !== b.package) out.push({ meterId: id, what: 'meters.package', detail: `sealed package of ${id} changed (record counter ${b.recordCounter} → ${a.recordCounter})` });
    else if (a.recordCounter !== b.recordCounter) out.push({ meterId: id, what: 'meters.record_counter', detail: `record counter of ${id}: ${b.recordCounter} → ${a.recordCounter}` });
    if (a.state !== b.state) out.push({ meterId: id, what: 'meters.state', detail: `meter ${id} went from ${b.state} to ${a.state}` });
    if (a.account !== b.account) out.push({ meterId: id, what: 'meters.account', detail: `meter ${id} changed account ${b.account} → ${a.account}` });
    for (const k of ['journal', 'indicia', 'refunds'] as const) {
      if (a[k] !== b[k] && !(k === 'journal' && allow.acceptedBy === id)) out.push({ meterId: id, what: k, detail: `${k} rows of ${id}: ${b[k]} → ${a[k]}` });
    }
    if (a.idempotencyKeys !== b.idempotencyKeys && allow.signedBy !== id) {
      out.push({ meterId: id, what: 'idempotency_keys', detail: `idempotency keys in ${id}'s scope: ${b.idempotencyKeys} → ${a.idempotencyKeys}, stored for a request ${id}'s HMK did not sign` });
    }
    out.push(...paymentsChanged(id, b.payments, a.payments), ...sessionsChanged(id, b.sessions, a.sessions, allow));
  }
  for (const k of ['accounts', 'scans', 'fraudReports', 'livePayments', 'foreignKeys', 'keysInProgress'] as const) {
    if (after[k] !== before[k]) out.push({ what: k, detail: `${k}: ${before[k]} → ${after[k]}` });
  }
  const newOrphans = after.orphans.filter((m) => !before.orphans.includes(m));
  if (newOrphans.length) out.push({ what: 'orphan meters', detail: `meters active without an account (never handed out): ${newOrphans.join(', ')}` });
  return out;
}
