import type { Operation } from '@vbi/core/protocol/messages';
import { RouteSpec, fillPath } from './api-routes';
import type { CaseContext } from './cases';
import { usableMailers } from './cases';
import type { JsonPath } from './json-paths';
import type { LegitMailer } from './legit-mailers';
import { dynamicPassword, encryptTo, macInputOf, signEnvelope } from './protocol';

/**
 * A valid request for each route, built fresh (current challenge, fresh counter and key), that
 * the generic mutations start from; and the judge that says whether a mutated request must be
 * refused, may be accepted (read-only routes), or must not be sent because it could still be a
 * valid, state-changing request.
 */
export type TemplateKind = 'envelope' | 'registration' | 'challenge' | 'complete' | 'heartbeat' | 'verify' | 'operator' | 'read' | 'unknown';

export interface Template {
  route: RouteSpec;
  kind: TemplateKind;
  pathValues: Record<string, string>;
  /** '' or '?…' */
  query: string;
  headers: Record<string, string>;
  body?: unknown;
  mailer?: LegitMailer;
  /** Sessions a refused variant of this request may end (bad dynamic passwords). */
  mayEndSessions: string[];
  /** Body fields that carry base64. */
  base64Fields: Set<string>;
  /** Body nodes worth mutating more often. */
  preferPaths: JsonPath[];
}

/** Operational routes and their operation (the envelope's `op`). */
export const ENVELOPE_OPS: Record<string, Operation> = {
  'POST /v1/balance': 'balance',
  'POST /v1/history': 'history',
  'POST /v1/purchases': 'purchase',
  'POST /v1/purchases/{paymentId}/settle': 'purchase',
  'POST /v1/refunds': 'refund',
  'POST /v1/sessions': 'session-open',
  'POST /v1/sessions/{sessionId}/close': 'session-close',
  'POST /v1/indicia': 'print',
  'POST /v1/corrections': 'correction',
};

const READ_ONLY = new Set(['GET /v1/health', 'GET /v1/metrics', 'GET /v1/openapi.json', 'GET /v1/modules', 'GET /v1/rates']);
const LETTER = { mailClass: 'first-class-letter', weightOz: 1 };

/** A print item with a valid dynamic password for `m` in `sessionId` (the counter moves on). */
export function printItem(m: LegitMailer, sessionId: string, postage: number, over: { counter?: number; clientTime?: number } = {}): Record<string, unknown> {
  const counter = over.counter ?? ++m.client.counter;
  const clientTime = over.clientTime ?? Date.now();
  return {
    counter, clientTime, destinationZip: '205000001', postage, rate: LETTER,
    dynamicPassword: dynamicPassword(m.client.hmk, { meterId: m.client.meterId, sessionId, counter, clientTime, purpose: 'print', destinationZip: '205000001', postage }),
  };
}

/** The body of a valid operational request of `route` for mailer `m`. */
export function validOperationBody(ctx: CaseContext, route: string, m: LegitMailer): unknown {
  const module = ctx.fx.modules.find((x) => x.serial === m.client.moduleSerial) ?? ctx.fx.modules[0];
  switch (route) {
    case 'POST /v1/balance': return {};
    case 'POST /v1/history': return { limit: 10 };
    case 'POST /v1/purchases': return { amount: 1_000, payment: { kind: 'card', token: 'tok_approve' } };
    case 'POST /v1/purchases/{paymentId}/settle': return { paymentId: m.appliedPaymentId };
    case 'POST /v1/refunds': return { kind: 'partial', amount: 1, reason: 'fuzz spoilage' };
    case 'POST /v1/sessions': return {
      moduleSerial: module.serial,
      encryptedPasswordSecret: encryptTo(module.transportKey, module.oaepHash, m.passwordSecret),
      encryptedSessionKey: encryptTo(module.transportKey, module.oaepHash, ctx.rng.bytes(32)),
    };
    case 'POST /v1/sessions/{sessionId}/close': return { sessionId: m.mainSession };
    case 'POST /v1/indicia': return { sessionId: m.mainSession, items: [printItem(m, m.mainSession, ctx.fx.letterPostage)] };
    case 'POST /v1/corrections': return { sessionId: m.mainSession, originalIndiciumId: m.indiciumId, item: printItem(m, m.mainSession, ctx.fx.letterPostage) };
    default: return {};
  }
}

function takesIdempotencyKey(route: RouteSpec): boolean {
  return route.headerParams.some((p) => p.name.toLowerCase() === 'idempotency-key');
}

/** The secrets part of a registration completion for `meterId`, as the route's schema asks for it. */
export function completionBody(ctx: CaseContext, route: RouteSpec, over: { moduleSerial?: string; token?: string; hmk?: Buffer; passwordSecret?: Buffer } = {}): Record<string, unknown> {
  const module = ctx.fx.modules[0];
  const props = Object.keys(((route.body?.properties ?? {}) as Record<string, unknown>));
  const body: Record<string, unknown> = {
    moduleSerial: over.moduleSerial ?? module.serial,
    encryptedHmk: encryptTo(module.transportKey, module.oaepHash, over.hmk ?? ctx.rng.bytes(32)),
    encryptedPasswordSecret: encryptTo(module.transportKey, module.oaepHash, over.passwordSecret ?? ctx.rng.bytes(32)),
  };
  // the registration token of step 1a, if this version of the protocol has one
  if (props.includes('registrationToken')) body.registrationToken = over.token ?? ctx.rng.hex(16);
  return body;
}

/** The registration token step 1a gave for a pending meter, if any. */
export function tokenOf(ctx: CaseContext, meterId: string): string | undefined {
  const t = ctx.fx.pending.find((p) => p.meterId === meterId)?.answer.registrationToken;
  return typeof t === 'string' ? t : undefined;
}

export function templateFor(ctx: CaseContext, route: RouteSpec): Template {
  const { rng, fx } = ctx;
  const t: Template = {
    route, kind: 'unknown', pathValues: {}, query: '', headers: {}, mayEndSessions: [], base64Fields: new Set(), preferPaths: [],
  };
  if (route.body) t.headers['content-type'] = 'application/json';
  if (takesIdempotencyKey(route)) t.headers['Idempotency-Key'] = ctx.key();
  const op = ENVELOPE_OPS[route.key];
  if (op) {
    const m = rng.pick(usableMailers(fx));
    const body = validOperationBody(ctx, route.key, m);
    t.kind = 'envelope';
    t.mailer = m;
    t.body = signEnvelope(m.client.hmk, { meterId: m.client.meterId, op, challenge: m.client.challenge, registers: m.client.registers, body });
    if (route.key.includes('{paymentId}')) t.pathValues.paymentId = String(m.appliedPaymentId);
    if (route.key.includes('{sessionId}')) t.pathValues.sessionId = m.mainSession;
    ['challenge', 'mac', 'body/encryptedPasswordSecret', 'body/encryptedSessionKey', 'body/items/0/dynamicPassword', 'body/item/dynamicPassword'].forEach((f) => t.base64Fields.add(f));
    t.preferPaths = [['mac'], ['challenge'], ['registers'], ['body'], ['meterId']];
    return t;
  }
  switch (route.key) {
    case 'POST /v1/registrations':
      t.kind = 'registration';
      t.body = { name: 'Fuzz Registrant', licensingZip: '20260', returnAddress: ['Fuzz Registrant', '1 Test St', 'Washington DC 20260'] };
      t.preferPaths = [['name'], ['returnAddress', 0], ['returnAddress', 1], ['licensingZip'], ['returnAddress']];
      return t;
    case 'POST /v1/registrations/{meterId}/challenge':
      t.kind = 'challenge';
      t.pathValues.meterId = rng.pick(fx.pending).meterId;
      t.body = { moduleSerial: fx.modules[0].serial, clientNonce: rng.bytes(32).toString('base64') };
      t.base64Fields.add('clientNonce');
      return t;
    case 'POST /v1/registrations/{meterId}/complete': {
      t.kind = 'complete';
      const p = fx.pending[0];
      t.pathValues.meterId = p.meterId;
      t.body = completionBody(ctx, route, { token: tokenOf(ctx, p.meterId) });
      ['encryptedHmk', 'encryptedPasswordSecret'].forEach((f) => t.base64Fields.add(f));
      return t;
    }
    case 'POST /v1/sessions/{sessionId}/heartbeat': {
      t.kind = 'heartbeat';
      const m = rng.pick(usableMailers(fx));
      const counter = ++m.client.counter;
      const clientTime = Date.now();
      t.mailer = m;
      t.pathValues.sessionId = m.spareSession;
      t.mayEndSessions = [m.spareSession];
      t.body = { meterId: m.client.meterId, counter, clientTime, dynamicPassword: dynamicPassword(m.client.hmk, { meterId: m.client.meterId, sessionId: m.spareSession, counter, clientTime, purpose: 'heartbeat' }) };
      t.base64Fields.add('dynamicPassword');
      return t;
    }
    case 'POST /v1/verify':
      t.kind = 'verify';
      t.body = { indicium: Buffer.concat([fx.indicium.data, fx.indicium.signature]).toString('base64'), record: false, location: 'fuzz check' };
      t.base64Fields.add('indicium');
      return t;
    case 'POST /v1/operator/meters/{meterId}/reactivate':
    case 'POST /v1/operator/meters/{meterId}/suspend':
    case 'POST /v1/operator/meters/{meterId}/withdraw':
    case 'POST /v1/operator/meters/{meterId}/refund-and-close':
    case 'POST /v1/operator/meters/{meterId}/revoke-licence':
      // the fuzzer holds no operator credential: every such request must be refused
      t.kind = 'operator';
      t.pathValues.meterId = rng.pick(usableMailers(fx)).client.meterId;
      t.body = { reason: 'fuzz review' };
      return t;
    case 'GET /v1/operator/pool':
    case 'GET /v1/operator/audit-records':
    case 'GET /v1/operator/fraud-cases':
    case 'GET /v1/operator/licence-requests':
      t.kind = 'operator';
      return t;
    case 'POST /v1/operator/pool/purchases':
      t.kind = 'operator';
      t.body = { amount: 1_000, reference: 'fuzz stock' };
      return t;
    case 'GET /v1/rates':
      t.kind = 'read';
      t.query = '?mailClass=first-class-letter&weightOz=1';
      return t;
    default:
      t.kind = READ_ONLY.has(route.key) ? 'read' : 'unknown';
      return t;
  }
}

export function pathOf(t: Template, over: Record<string, string> = {}): string {
  return fillPath(t.route, { ...t.pathValues, ...over }) + t.query;
}

/** The server's view of a body: what JSON.parse makes of its bytes as UTF-8 (replacement characters included). */
export const NOT_JSON = Symbol('not JSON');
export function serverView(bytes: Buffer | undefined): unknown {
  if (bytes === undefined) return undefined;
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    return NOT_JSON;
  }
}

/** C0 and C1 controls, DEL, and unpaired surrogates: text no name or address may hold. */
const BAD_TEXT = /[\u0000-\u001f\u007f-\u009f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

export function holdsBadText(v: unknown): boolean {
  if (typeof v === 'string') return BAD_TEXT.test(v);
  if (Array.isArray(v)) return v.some(holdsBadText);
  if (v && typeof v === 'object') return Object.entries(v).some(([k, x]) => BAD_TEXT.test(k) || holdsBadText(x));
  return false;
}

function sameBytes(a: unknown, b: unknown): boolean {
  return typeof a === 'string' && typeof b === 'string' && Buffer.from(a, 'base64').equals(Buffer.from(b, 'base64'));
}

/** Whether `view` is the template's request in another spelling (same MAC'd bytes, same MAC). */
export function sameEnvelope(template: unknown, view: unknown): boolean {
  const a = macInputOf(template);
  const b = macInputOf(view);
  return !!a && !!b && a.equals(b) && sameBytes((template as { mac: string }).mac, (view as { mac?: unknown })?.mac);
}

export type Verdict = 'reject' | 'any' | 'skip';

/**
 * Whether a request made from template `t` with body `view` (the server's view of the bytes)
 * must be refused. 'skip' means it may still be a valid request that changes something, so it
 * is not sent in the fuzzing phase.
 */
export function judge(ctx: CaseContext, t: Template, view: unknown): Verdict {
  if (t.route.method === 'GET' || t.kind === 'read') return 'any';
  if (view === NOT_JSON) return 'reject';
  if (t.route.body && !ctx.schemas.valid(t.route.body, view)) return 'reject';
  const v = view as Record<string, unknown>;
  const tb = t.body as Record<string, unknown>;
  switch (t.kind) {
    case 'envelope':
      return sameEnvelope(tb, v) ? 'skip' : 'reject';
    case 'registration':
      return holdsBadText(v) ? 'reject' : 'skip';
    case 'challenge':
      return 'any';
    case 'complete':
      return v.moduleSerial === tb.moduleSerial && v.registrationToken === tb.registrationToken
        && sameBytes(tb.encryptedHmk, v.encryptedHmk) && sameBytes(tb.encryptedPasswordSecret, v.encryptedPasswordSecret) ? 'skip' : 'reject';
    case 'heartbeat':
      return v.meterId === tb.meterId && v.counter === tb.counter && v.clientTime === tb.clientTime && sameBytes(tb.dynamicPassword, v.dynamicPassword) ? 'skip' : 'reject';
    case 'verify':
      // without a postal verifier credential nothing is recorded, whatever the body says
      return 'any';
    case 'operator':
      return 'reject';
    default:
      return 'skip';
  }
}
