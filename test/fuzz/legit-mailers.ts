import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import type { Knex } from 'knex';
import { RawClient } from '../helpers/raw-client';
import { OperationalRequest, passwordSecret } from '@vbi/core/protocol/messages';
import { dynamicPassword, encryptTo } from './protocol';

/**
 * The setup phase: mailers that use the service correctly, through the protocol, so the fuzzer
 * has real meter ids, sessions, payments, indicia and valid envelopes to mutate. Everything here
 * is a valid request; the fuzzing phase that follows sends none.
 */

/** A valid request of the setup phase, kept for replays (its challenge is used up by now). */
export interface SentEnvelope {
  /** The route, as the OpenAPI document names it. */
  route: string;
  path: string;
  env: OperationalRequest<unknown>;
  idempotencyKey?: string;
  status: number;
  json: unknown;
}

export interface LegitMailer {
  name: string;
  client: RawClient;
  /** RSA-OAEP hash the module announced. */
  oaepHash: string;
  password: string;
  passwordSecret: Buffer;
  /** An open session for prints, corrections and closes (never sent a bad dynamic password). */
  mainSession: string;
  /** An open session that heartbeats with bad dynamic passwords may end. */
  spareSession: string;
  /** A session closed by the client. */
  closedSession: string;
  appliedPaymentId: number;
  /** A check, still pending: settling it would download postage. */
  pendingPaymentId: number;
  indiciumId: number;
  /** The valid requests of the setup, in order. */
  sent: SentEnvelope[];
  /** Challenges this meter was issued and used (stale now). */
  usedChallenges: string[];
  /** Set when a refused request changed the meter's challenge behind the fuzzer's back. */
  desynced: boolean;
}

/** Step 1a done, 1c never: a meter handed out and waiting for its secrets. */
export interface PendingRegistration {
  meterId: string;
  /** The registration answer (a registration token, if the protocol has one, is in it). */
  answer: Record<string, unknown>;
}

export interface ModuleInfo {
  serial: string;
  transportKey: Buffer;
  oaepHash: string;
}

export interface Fixtures {
  mailers: LegitMailer[];
  pending: PendingRegistration[];
  /** Certified meters in the MeterGen pool that no registration handed out. */
  poolMeters: string[];
  /** A well-formed meter id that does not exist. */
  unknownMeterId: string;
  modules: ModuleInfo[];
  /** An RSA key that belongs to no module. */
  foreignKey: KeyObject;
  /** A printed indicium (signed data and signature). */
  indicium: { meterId: string; indiciumId: number; data: Buffer; signature: Buffer };
  /** The price of the piece the setup printed (first-class letter, 1 oz). */
  letterPostage: number;
  /** Meters handed out by setup and final checks (for the run-wide state). */
  ownedMeterIds(): string[];
}

const LETTER = { mailClass: 'first-class-letter', weightOz: 1 };

function expectOk(what: string, r: { status: number; json: unknown }, status = 200): void {
  if (r.status !== status) throw new Error(`fuzz setup: ${what} answered ${r.status}: ${JSON.stringify(r.json)?.slice(0, 400)}`);
}

/** 'POST /v1/purchases/{paymentId}/settle' for '/v1/purchases/7/settle'. */
function routeKeyOf(path: string): string {
  return `POST ${path.replace(/^\/v1\/purchases\/\d+\//, '/v1/purchases/{paymentId}/').replace(/^\/v1\/sessions\/[0-9a-f]{32}\//, '/v1/sessions/{sessionId}/')}`;
}

/** Sends one valid operational request of `m` and records it. */
async function op(m: LegitMailer, path: string, name: OperationalRequest['op'], body: unknown, idempotencyKey?: string): Promise<{ status: number; json: any }> {
  const before = m.client.challenge;
  const env = m.client.envelope(name, body) as OperationalRequest<unknown>;
  const r = await m.client.send(path, env, idempotencyKey ? { 'Idempotency-Key': idempotencyKey } : {});
  m.sent.push({ route: routeKeyOf(path), path, env, idempotencyKey, status: r.status, json: r.json });
  if (m.client.challenge !== before) m.usedChallenges.push(before);
  return r;
}

/** Opens a session for `m` with a fresh session key. */
export async function openSession(m: LegitMailer, moduleSerial: string, transportKey: Buffer): Promise<string> {
  const r = await op(m, '/v1/sessions', 'session-open', {
    moduleSerial,
    encryptedPasswordSecret: encryptTo(transportKey, m.oaepHash, m.passwordSecret),
    encryptedSessionKey: encryptTo(transportKey, m.oaepHash, randomBytes(32)),
  });
  expectOk(`${m.name} session-open`, r);
  return r.json.result.sessionId as string;
}

/** Prints one first-class letter in `sessionId`; returns the indicium id. */
export async function printLetter(m: LegitMailer, sessionId: string, postage: number, key: string): Promise<number> {
  const counter = ++m.client.counter;
  const clientTime = Date.now();
  const item = {
    counter, clientTime, destinationZip: '205000001', postage, rate: LETTER,
    dynamicPassword: dynamicPassword(m.client.hmk, { meterId: m.client.meterId, sessionId, counter, clientTime, purpose: 'print', destinationZip: '205000001', postage }),
  };
  const r = await op(m, '/v1/indicia', 'print', { sessionId, items: [item] }, key);
  expectOk(`${m.name} print`, r);
  const it = r.json.items?.[0];
  if (it?.status !== 'printed') throw new Error(`fuzz setup: ${m.name} print: ${JSON.stringify(r.json).slice(0, 400)}`);
  return it.indiciumId as number;
}

/** Registers (1a + 1c) a mailer through the protocol. */
export async function registerMailer(url: string, name: string, modules: ModuleInfo[]): Promise<LegitMailer> {
  const client = new RawClient(url);
  const password = `fuzz password of ${name}`;
  await client.register(password, name);
  const module = modules.find((x) => x.serial === client.moduleSerial) ?? modules[0];
  return {
    name, client, oaepHash: module.oaepHash, password, passwordSecret: passwordSecret(password, client.meterId),
    mainSession: '', spareSession: '', closedSession: '', appliedPaymentId: 0, pendingPaymentId: 0, indiciumId: 0,
    sent: [], usedChallenges: [], desynced: false,
  };
}

/** A registered mailer that bought postage, has open and closed sessions and printed one letter. */
async function fullMailer(url: string, name: string, modules: ModuleInfo[], letterPostage: number): Promise<LegitMailer> {
  const m = await registerMailer(url, name, modules);
  const tk = modules.find((x) => x.serial === m.client.moduleSerial)?.transportKey ?? modules[0].transportKey;
  const buy = await op(m, '/v1/purchases', 'purchase', { amount: 200_000, payment: { kind: 'card', token: 'tok_approve' } }, `setup-${name}-buy`);
  expectOk(`${name} purchase`, buy);
  m.appliedPaymentId = buy.json.result.paymentId;
  const check = await op(m, '/v1/purchases', 'purchase', { amount: 5_000, payment: { kind: 'check', token: 'tok_approve' } }, `setup-${name}-check`);
  expectOk(`${name} check purchase`, check);
  if (check.json.result.status !== 'pending') throw new Error(`fuzz setup: a check purchase should stay pending: ${JSON.stringify(check.json.result)}`);
  m.pendingPaymentId = check.json.result.paymentId;
  expectOk(`${name} balance`, await op(m, '/v1/balance', 'balance', {}));
  m.mainSession = await openSession(m, m.client.moduleSerial, tk);
  m.spareSession = await openSession(m, m.client.moduleSerial, tk);
  m.closedSession = await openSession(m, m.client.moduleSerial, tk);
  expectOk(`${name} session-close`, await op(m, `/v1/sessions/${m.closedSession}/close`, 'session-close', { sessionId: m.closedSession }));
  const hb = m.client.dynamicPassword(m.mainSession, 'heartbeat');
  const beat = await m.client.call('POST', `/v1/sessions/${m.mainSession}/heartbeat`, { meterId: m.client.meterId, ...hb });
  expectOk(`${name} heartbeat`, beat);
  m.indiciumId = await printLetter(m, m.mainSession, letterPostage, `setup-${name}-print`);
  return m;
}

/** The whole setup phase. */
export async function createFixtures(url: string, db: Knex, opts: { mailers: number; pending: number }): Promise<Fixtures> {
  const probe = new RawClient(url);
  const mods = await probe.call('GET', '/v1/modules');
  expectOk('GET /v1/modules', mods);
  const modules: ModuleInfo[] = (mods.json.modules as Array<{ serial: string; transportKey: string; oaepHash: string }>).map((x) => ({
    serial: x.serial, transportKey: Buffer.from(x.transportKey, 'base64'), oaepHash: x.oaepHash,
  }));
  const quote = await probe.call('GET', `/v1/rates?mailClass=${LETTER.mailClass}&weightOz=${LETTER.weightOz}`);
  expectOk('GET /v1/rates', quote);
  const letterPostage = quote.json.postage as number;

  const mailers: LegitMailer[] = [];
  for (let i = 0; i < opts.mailers; i++) mailers.push(await fullMailer(url, `Fuzz Mailer ${String.fromCharCode(65 + i)}`, modules, letterPostage));
  const pending: PendingRegistration[] = [];
  for (let i = 0; i < opts.pending; i++) {
    const r = await probe.call('POST', '/v1/registrations', { name: `Fuzz Pending ${i + 1}`, licensingZip: '20260', returnAddress: ['Fuzz Pending', '1 Test St', 'Washington DC 20260'] });
    expectOk('pending registration', r, 201);
    pending.push({ meterId: r.json.meterId, answer: r.json });
  }
  const handedOut = new Set([...mailers.map((m) => m.client.meterId), ...pending.map((p) => p.meterId)]);
  // certified ones only: MeterGen may still be certifying a meter it just created
  const pool = (await db('meters').where({ state: 'unassigned' }).whereNull('account_id').whereNotNull('cert_serial').orderBy('meter_id').limit(4).select('meter_id'))
    .map((r: { meter_id: string }) => r.meter_id).filter((id: string) => !handedOut.has(id)).slice(0, 2);
  const first = mailers[0];
  const row = await db('indicia').where({ indicium_id: first.indiciumId }).first('data', 'signature');
  const foreignKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
  return {
    mailers, pending, poolMeters: pool, unknownMeterId: `ZZFUZZ-${randomBytes(4).toString('hex').toUpperCase()}`,
    modules, foreignKey, letterPostage,
    indicium: { meterId: first.client.meterId, indiciumId: first.indiciumId, data: row.data, signature: row.signature },
    ownedMeterIds: () => [...mailers.map((m) => m.client.meterId), ...pending.map((p) => p.meterId), ...pool],
  };
}
