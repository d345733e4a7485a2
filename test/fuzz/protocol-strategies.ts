import { isDeepStrictEqual } from 'node:util';
import { RouteSpec, fillPath } from './api-routes';
import { CaseContext, FuzzCase, Strategy, twoMailers, usableMailers } from './cases';
import type { RawAnswer } from './http';
import { parseJson } from './http';
import type { LegitMailer } from './legit-mailers';
import { dynamicPassword, encryptTo, macOf } from './protocol';
import { ENVELOPE_OPS, completionBody, printItem, tokenOf, validOperationBody } from './templates';

/**
 * Protocol mutations (docs/protocol.md): messages that are well-formed and often correctly
 * MAC'd, but wrong in what they say — a stale or foreign challenge, registers that differ, a MAC
 * from another meter, a replay, a secret of the wrong size or under the wrong key, a module that
 * does not exist, a payment, session or indicium of another meter, a path id that differs from
 * the body's, a registration completed by someone who never started it. Each must be refused
 * and change nothing (beyond what the protocol says a refusal does).
 */

interface EnvelopeSpec {
  body: unknown;
  meterId?: string;
  op?: string;
  challenge?: string;
  registers?: unknown;
  /** The HMK that MACs the envelope (default: the mailer's). */
  signer?: Buffer;
  /** A MAC to send instead of computing one. */
  mac?: string;
  /** Path parameter values (default: from the body). */
  pathValues?: Record<string, string>;
  /** Idempotency-Key: a fresh one by default on routes that take one; null sends none. */
  key?: string | null;
  expect?: 'reject' | 'any';
  check?: (a: RawAnswer) => string | undefined;
}

function hmkOwner(ctx: CaseContext, hmk: Buffer, meterId: string): string | undefined {
  return ctx.fx.mailers.find((x) => x.client.hmk.equals(hmk) && x.client.meterId === meterId)?.client.meterId;
}

/** One operational request of mailer `m` on `routeKey`, as `spec` says. */
function envelopeCase(ctx: CaseContext, routeKey: string, label: string, m: LegitMailer, spec: EnvelopeSpec): FuzzCase | undefined {
  const route = ctx.routes.get(routeKey);
  if (!route) return undefined;
  const unsigned = {
    meterId: spec.meterId ?? m.client.meterId, op: spec.op ?? ENVELOPE_OPS[routeKey], challenge: spec.challenge ?? m.client.challenge,
    registers: spec.registers ?? m.client.registers, body: spec.body,
  };
  const signer = spec.signer ?? m.client.hmk;
  const env = { ...unsigned, mac: spec.mac ?? macOf(signer, unsigned) };
  const b = spec.body as { paymentId?: unknown; sessionId?: unknown } | undefined;
  const pathValues = { paymentId: String(b?.paymentId ?? m.appliedPaymentId), sessionId: String(b?.sessionId ?? m.mainSession), ...spec.pathValues };
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const idem = route.headerParams.some((p) => p.name.toLowerCase() === 'idempotency-key');
  if (idem && spec.key !== null) headers['Idempotency-Key'] = spec.key ?? ctx.key();
  return {
    route: routeKey, family: 'protocol', label, expect: spec.expect ?? 'reject', check: spec.check, mailer: m,
    request: { method: route.method, path: fillPath(route, pathValues), headers, body: Buffer.from(JSON.stringify(env)) },
    allow: { mayEndSessions: new Set(), signedBy: spec.mac === undefined ? hmkOwner(ctx, signer, unsigned.meterId) : undefined },
  };
}

/** A plain JSON request (registration, heartbeat, verify). */
function jsonCase(ctx: CaseContext, routeKey: string, label: string, o: { pathValues?: Record<string, string>; body: unknown; expect?: 'reject' | 'any'; mayEnd?: string[]; check?: (a: RawAnswer) => string | undefined; mailer?: LegitMailer }): FuzzCase | undefined {
  const route = ctx.routes.get(routeKey);
  if (!route) return undefined;
  return {
    route: routeKey, family: 'protocol', label, expect: o.expect ?? 'reject', check: o.check, mailer: o.mailer,
    request: { method: route.method, path: fillPath(route, o.pathValues ?? {}), headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify(o.body)) },
    allow: { mayEndSessions: new Set(o.mayEnd ?? []) },
  };
}

/** Secrets that are not a 32-byte secret under this module's transport key. */
function badSecrets(ctx: CaseContext): Array<[string, string]> {
  const mod = ctx.fx.modules[0];
  const other = mod.oaepHash === 'sha1' ? 'sha256' : 'sha1';
  // the ciphertext length is the modulus length
  const keyBytes = Buffer.from(encryptTo(mod.transportKey, mod.oaepHash, Buffer.alloc(1)), 'base64').length;
  const { rng } = ctx;
  return [
    ['16-byte secret', encryptTo(mod.transportKey, mod.oaepHash, rng.bytes(16))],
    ['24-byte secret', encryptTo(mod.transportKey, mod.oaepHash, rng.bytes(24))],
    ['31-byte secret', encryptTo(mod.transportKey, mod.oaepHash, rng.bytes(31))],
    ['empty secret', encryptTo(mod.transportKey, mod.oaepHash, Buffer.alloc(0))],
    ['secret under a key of no module', encryptTo(ctx.fx.foreignKey, mod.oaepHash, rng.bytes(32))],
    [`secret with OAEP ${other} (module uses ${mod.oaepHash})`, encryptTo(mod.transportKey, other, rng.bytes(32))],
    ['random bytes of the ciphertext length', rng.bytes(keyBytes).toString('base64')],
    ['ciphertext cut short', encryptTo(mod.transportKey, mod.oaepHash, rng.bytes(32)).slice(0, 300)],
    ['empty string', ''],
    ['"AAAA" (3 bytes)', 'AAAA'],
    ['16 random bytes', rng.bytes(16).toString('base64')],
    ['not base64', '!!!!'],
  ];
}

/** The answer to a retried request must be the first answer, unchanged. */
function sameAnswerAs(first: { status: number; json: unknown }): (a: RawAnswer) => string | undefined {
  return (a) => {
    const json = parseJson(a.text);
    if (a.status === first.status && isDeepStrictEqual(json, first.json)) return undefined;
    return `a retry with the same Idempotency-Key and body answered ${a.status} ${a.text.slice(0, 160)} instead of the stored ${first.status} answer`;
  };
}

/** A batch the service answered must not have printed (debited) an item it should refuse. */
function noItemPrinted(a: RawAnswer): string | undefined {
  if (a.status < 200 || a.status > 299) return undefined;
  const items = (parseJson(a.text) as { items?: Array<{ status?: string }> } | undefined)?.items ?? [];
  return items.some((i) => i.status === 'printed') ? `an item the rate table refuses was printed: ${a.text.slice(0, 160)}` : undefined;
}

/** A changed indicium must not verify. */
function notValid(a: RawAnswer): string | undefined {
  const r = (parseJson(a.text) as { result?: unknown } | undefined)?.result;
  return a.status === 200 && r === 'VALID' ? 'a changed indicium verified as VALID' : undefined;
}

/** A stranger's request must not get the stored answer of someone else's key. */
function notAReplay(a: RawAnswer): string | undefined {
  return a.headers['idempotent-replay'] === 'true' ? `a stranger's request got another meter's stored answer (Idempotent-Replay: true): ${a.text.slice(0, 160)}` : undefined;
}

/** The body with one value changed (a number +1, a session id's last digit), or a field added. */
function tweaked(body: unknown): unknown {
  const b = { ...(body as Record<string, unknown>) };
  for (const k of ['amount', 'limit', 'paymentId', 'originalIndiciumId']) {
    if (typeof b[k] === 'number') return { ...b, [k]: (b[k] as number) + 1 };
  }
  if (typeof b.sessionId === 'string') return { ...b, sessionId: b.sessionId.slice(0, -1) + (b.sessionId.endsWith('0') ? '1' : '0') };
  return { ...b, fuzz: 1 };
}

/** Strategies every operational route gets: the envelope checks of docs/protocol.md section 2. */
function envelopeStrategies(routeKey: string): Strategy[] {
  const s = (name: string, build: (ctx: CaseContext) => FuzzCase | undefined, weight = 1): Strategy => ({ route: routeKey, name, weight, build });
  const body = (ctx: CaseContext, m: LegitMailer) => validOperationBody(ctx, routeKey, m);
  const out: Strategy[] = [
    s('stale challenge', (ctx) => {
      const m = ctx.rng.pick(usableMailers(ctx.fx));
      return envelopeCase(ctx, routeKey, 'MAC-valid envelope with a challenge used earlier', m, { body: body(ctx, m), challenge: ctx.rng.pick(m.usedChallenges) });
    }),
    s('random challenge', (ctx) => {
      const m = ctx.rng.pick(usableMailers(ctx.fx));
      const n = ctx.rng.pick([16, 16, 0, 15, 32]);
      return envelopeCase(ctx, routeKey, `MAC-valid envelope with a random ${n}-byte challenge`, m, { body: body(ctx, m), challenge: ctx.rng.bytes(n).toString('base64') });
    }),
    s('challenge of another meter', (ctx) => {
      const [m, o] = twoMailers(ctx);
      return envelopeCase(ctx, routeKey, "MAC-valid envelope with another meter's current challenge", m, { body: body(ctx, m), challenge: o.client.challenge });
    }),
    s('registers differ', (ctx) => {
      const m = ctx.rng.pick(usableMailers(ctx.fx));
      const r = m.client.registers;
      const registers = ctx.rng.pick([
        { ascending: r.ascending + 1, descending: r.descending }, { ascending: r.ascending, descending: r.descending + 1_000 },
        { ascending: 0, descending: 0 }, { ascending: Number.MAX_SAFE_INTEGER, descending: r.descending }, { ascending: r.ascending, descending: 1e23 },
      ]);
      return envelopeCase(ctx, routeKey, `MAC-valid envelope with registers ${JSON.stringify(registers)}`, m, { body: body(ctx, m), registers });
    }),
    s('MAC from another meter', (ctx) => {
      const [m, o] = twoMailers(ctx);
      return envelopeCase(ctx, routeKey, "envelope MAC'd with another meter's HMK", m, { body: body(ctx, m), signer: o.client.hmk });
    }),
    s('meter id swapped', (ctx) => {
      const [m, o] = twoMailers(ctx);
      return envelopeCase(ctx, routeKey, "mailer's MAC'd envelope with another meter's id", m, { body: body(ctx, m), meterId: o.client.meterId });
    }),
    s('field changed after the MAC', (ctx) => {
      const m = ctx.rng.pick(usableMailers(ctx.fx));
      const unsigned = { meterId: m.client.meterId, op: ENVELOPE_OPS[routeKey], challenge: m.client.challenge, registers: m.client.registers, body: body(ctx, m) };
      const mac = macOf(m.client.hmk, unsigned);
      const which = ctx.rng.pick(['body', 'registers', 'challenge', 'meterId']);
      const changed = which === 'body' ? { body: tweaked(unsigned.body) }
        : which === 'registers' ? { registers: { ...m.client.registers, ascending: m.client.registers.ascending + 1 } }
          : which === 'meterId' ? { meterId: ctx.rng.pick(ctx.fx.mailers.filter((x) => x !== m)).client.meterId }
            : { challenge: ctx.rng.bytes(16).toString('base64') };
      return envelopeCase(ctx, routeKey, `valid envelope with ${which} changed after the MAC`, m, { ...unsigned, ...changed, mac });
    }),
    s('bad MAC', (ctx) => {
      const m = ctx.rng.pick(usableMailers(ctx.fx));
      const [what, mac] = ctx.rng.pick<[string, string]>([
        ['empty MAC', ''], ['16-byte MAC', ctx.rng.bytes(16).toString('base64')], ['31-byte MAC', ctx.rng.bytes(31).toString('base64')],
        ['33-byte MAC', ctx.rng.bytes(33).toString('base64')], ['64-byte MAC', ctx.rng.bytes(64).toString('base64')], ['random 32-byte MAC', ctx.rng.bytes(32).toString('base64')],
        ['MAC "===="', '===='], ['MAC "AA=="', 'AA=='],
      ]);
      return envelopeCase(ctx, routeKey, what, m, { body: body(ctx, m), mac });
    }),
    s('meter that cannot answer', (ctx) => {
      const m = ctx.rng.pick(usableMailers(ctx.fx));
      const pool = ctx.fx.poolMeters;
      const [what, meterId] = ctx.rng.pick<[string, string]>([
        ['a meter that does not exist', ctx.fx.unknownMeterId], ['a meter whose registration never completed', ctx.rng.pick(ctx.fx.pending).meterId],
        ...(pool.length ? [['a pool meter never handed out', ctx.rng.pick(pool)] as [string, string]] : []),
      ]);
      return envelopeCase(ctx, routeKey, `envelope for ${what}`, m, { body: body(ctx, m), meterId, signer: ctx.rng.bytes(32) });
    }),
    s('replay of an earlier request', (ctx) => {
      const m = ctx.rng.pick(ctx.fx.mailers);
      const earlier = m.sent.filter((x) => x.status === 200);
      const same = earlier.filter((x) => x.route === routeKey);
      const e = ctx.rng.pick(same.length ? same : earlier);
      const route = ctx.routes.get(routeKey);
      if (!route) return undefined;
      // the earlier envelope on this route (its challenge is used up), under a new idempotency key
      return {
        route: routeKey, family: 'protocol', label: `replay of the setup's ${e.env.op} (${e.path}) under a new key`, expect: 'reject', mailer: m,
        request: { method: 'POST', path: same.includes(e) ? e.path : fillPath(route, { paymentId: String(m.appliedPaymentId), sessionId: m.mainSession }), headers: { 'content-type': 'application/json', 'Idempotency-Key': ctx.key() }, body: Buffer.from(JSON.stringify(e.env)) },
        allow: { mayEndSessions: new Set(), signedBy: m.client.meterId },
      };
    }),
  ];
  return out;
}

/** Retries and strangers on the idempotent routes (purchase, print). */
function idempotencyStrategies(routeKey: string): Strategy[] {
  const path = routeKey.split(' ')[1];
  const setupOf = (m: LegitMailer) => m.sent.filter((x) => x.path === path && x.idempotencyKey && x.status === 200);
  return [
    {
      route: routeKey, name: 'retry with the same key', weight: 1,
      build(ctx) {
        const m = ctx.rng.pick(ctx.fx.mailers);
        const list = setupOf(m);
        if (!list.length) return undefined;
        const e = ctx.rng.pick(list);
        // the stored answer comes back; nothing runs again
        return {
          route: routeKey, family: 'protocol', label: `retry of the setup's ${e.env.op} with its Idempotency-Key`, expect: 'any', check: sameAnswerAs(e), mailer: m,
          request: { method: 'POST', path, headers: { 'content-type': 'application/json', 'Idempotency-Key': e.idempotencyKey! }, body: Buffer.from(JSON.stringify(e.env)) },
          allow: { mayEndSessions: new Set(), signedBy: m.client.meterId },
        };
      },
    },
    {
      route: routeKey, name: 'stranger reuses a key', weight: 1,
      build(ctx) {
        const [victim, stranger] = twoMailers(ctx);
        const list = setupOf(victim);
        if (!list.length || victim === stranger) return undefined;
        const e = ctx.rng.pick(list);
        const own = ctx.rng.chance(0.5);
        // the stranger's own envelope (MAC-valid, a random stale challenge: never the same request
        // twice, so no answer of the stranger's own can legitimately be replayed), or one naming
        // the victim's meter with a forged MAC, under the victim's key
        const challenge = ctx.rng.bytes(16).toString('base64');
        const body = own
          ? { ...e.env, meterId: stranger.client.meterId, challenge, mac: macOf(stranger.client.hmk, { ...e.env, meterId: stranger.client.meterId, challenge }) }
          : { ...e.env, mac: ctx.rng.bytes(32).toString('base64') };
        return {
          route: routeKey, family: 'protocol', label: own ? "stranger's own envelope under another meter's Idempotency-Key" : "forged envelope for the victim's meter under the victim's Idempotency-Key",
          expect: 'reject', check: notAReplay, mailer: own ? stranger : victim,
          request: { method: 'POST', path, headers: { 'content-type': 'application/json', 'Idempotency-Key': e.idempotencyKey! }, body: Buffer.from(JSON.stringify(body)) },
          allow: { mayEndSessions: new Set(), signedBy: own ? stranger.client.meterId : undefined },
        };
      },
    },
    {
      route: routeKey, name: 'stranger takes a fresh key', weight: 1,
      build(ctx) {
        const victim = ctx.rng.pick(ctx.fx.mailers);
        // a forged request in the victim's name must not reserve a key in the victim's scope
        return envelopeCase(ctx, routeKey, "forged envelope (random MAC) in another meter's name under a fresh key", victim, {
          body: validOperationBody(ctx, routeKey, victim), mac: ctx.rng.bytes(32).toString('base64'),
        });
      },
    },
  ];
}

/** Requests that are MAC-valid with the current challenge: only their meaning is wrong. */
function semanticStrategies(ctx0: { routes: Map<string, RouteSpec> }): Strategy[] {
  const out: Strategy[] = [];
  const add = (routeKey: string, name: string, build: (ctx: CaseContext, m: LegitMailer, o: LegitMailer) => FuzzCase | undefined, weight = 1) => {
    // these reach deepest into the service: drawn more often than the generic ones
    if (ctx0.routes.has(routeKey)) out.push({ route: routeKey, name, weight: 2 * weight, build: (ctx) => { const [m, o] = twoMailers(ctx); return build(ctx, m, o); } });
  };
  const env = envelopeCase;

  // purchases: nothing is charged for a download that is refused
  add('POST /v1/purchases', 'download the meter or pool cannot take', (ctx, m) => env(ctx, 'POST /v1/purchases', 'purchase of 10^12 mills (past the maximum descending register and the pool), card approved', m, { body: { amount: 1_000_000_000_000, payment: { kind: 'card', token: 'tok_approve' } } }), 2);
  add('POST /v1/purchases', 'declined card', (ctx, m) => env(ctx, 'POST /v1/purchases', 'purchase with a declined card', m, { body: { amount: 1_000, payment: { kind: 'card', token: ctx.rng.pick(['tok_decline', 'tok_invalid', `tok_fuzz_${ctx.rng.hex(3)}`]) } } }));
  add('POST /v1/purchases', 'payment kind', (ctx, m) => env(ctx, 'POST /v1/purchases', 'purchase paid with an unknown kind', m, { body: { amount: 1_000, payment: { kind: ctx.rng.pick(['bitcoin', 'CARD', '', 'card ']), token: 'tok_approve' } } }));
  add('POST /v1/purchases', 'no idempotency key', (ctx, m) => env(ctx, 'POST /v1/purchases', 'valid purchase without Idempotency-Key', m, { body: validOperationBody(ctx, 'POST /v1/purchases', m), key: null }));

  // settle: the path names the payment
  add('POST /v1/purchases/{paymentId}/settle', 'path id differs from body id', (ctx, m) => {
    const path = ctx.rng.pick([String(m.pendingPaymentId + 1_000_000), String(m.appliedPaymentId)]);
    return env(ctx, 'POST /v1/purchases/{paymentId}/settle', `settle with path id ${path} and body id ${m.pendingPaymentId} (a pending check)`, m, { body: { paymentId: m.pendingPaymentId }, pathValues: { paymentId: path } });
  }, 2);
  add('POST /v1/purchases/{paymentId}/settle', "another meter's payment", (ctx, m, o) => env(ctx, 'POST /v1/purchases/{paymentId}/settle', "settle another meter's pending payment", m, { body: { paymentId: o.pendingPaymentId } }));
  add('POST /v1/purchases/{paymentId}/settle', 'applied or unknown payment', (ctx, m) => {
    const id = ctx.rng.pick([m.appliedPaymentId, Number.MAX_SAFE_INTEGER, 2 ** 31, 1e20]);
    return env(ctx, 'POST /v1/purchases/{paymentId}/settle', `settle payment ${id}`, m, { body: { paymentId: id }, pathValues: { paymentId: id === 1e20 ? '100000000000000000000' : String(id) } });
  });

  // refunds
  add('POST /v1/refunds', 'refund the meter cannot give', (ctx, m) => {
    const r = m.client.registers;
    const [what, body] = ctx.rng.pick<[string, unknown]>([
      ['partial refund above the descending register', { kind: 'partial', amount: r.descending + 1, reason: 'fuzz' }],
      ['partial refund past the spoilage limit', { kind: 'partial', amount: Math.max(100, r.ascending), reason: 'fuzz' }],
      ['full refund with an amount', { kind: 'full', amount: 1, reason: 'fuzz' }],
      ['partial refund without an amount', { kind: 'partial', reason: 'fuzz' }],
      ['unknown refund kind', { kind: 'everything', amount: 1, reason: 'fuzz' }],
    ]);
    return env(ctx, 'POST /v1/refunds', what, m, { body });
  }, 2);
  add('POST /v1/refunds', 'reason with control characters', (ctx, m) => {
    const c = ctx.rng.pick(['\u0000', 'a\u0000b', '\u001b[2J', '\ud800']);
    return env(ctx, 'POST /v1/refunds', `partial refund of 1 mill with reason ${JSON.stringify(c)}`, m, { body: { kind: 'partial', amount: 1, reason: c } });
  });

  // session open: module and secrets
  add('POST /v1/sessions', 'unknown module', (ctx, m) => {
    const body = validOperationBody(ctx, 'POST /v1/sessions', m) as Record<string, unknown>;
    const serial = ctx.rng.pick(['FUZZNOSUCHMODULE', '', '0', ctx.rng.hex(8), 'A'.repeat(32)]);
    return env(ctx, 'POST /v1/sessions', `session open for module ${JSON.stringify(serial)}`, m, { body: { ...body, moduleSerial: serial } });
  }, 2);
  add('POST /v1/sessions', 'wrong password', (ctx, m) => {
    const body = validOperationBody(ctx, 'POST /v1/sessions', m) as Record<string, unknown>;
    const mod = ctx.fx.modules[0];
    return env(ctx, 'POST /v1/sessions', 'session open with another password secret', m, { body: { ...body, encryptedPasswordSecret: encryptTo(mod.transportKey, mod.oaepHash, ctx.rng.bytes(32)) } });
  });
  add('POST /v1/sessions', 'bad password secret', (ctx, m) => {
    const body = validOperationBody(ctx, 'POST /v1/sessions', m) as Record<string, unknown>;
    const [what, secret] = ctx.rng.pick(badSecrets(ctx));
    return env(ctx, 'POST /v1/sessions', `session open, encryptedPasswordSecret: ${what}`, m, { body: { ...body, encryptedPasswordSecret: secret } });
  }, 2);
  add('POST /v1/sessions', 'bad session key', (ctx, m) => {
    const body = validOperationBody(ctx, 'POST /v1/sessions', m) as Record<string, unknown>;
    const [what, secret] = ctx.rng.pick(badSecrets(ctx));
    return env(ctx, 'POST /v1/sessions', `session open (right password), encryptedSessionKey: ${what}`, m, { body: { ...body, encryptedSessionKey: secret } });
  }, 2);

  // session close: the path names the session
  add('POST /v1/sessions/{sessionId}/close', 'path id differs from body id', (ctx, m) => {
    const path = ctx.rng.pick([ctx.rng.hex(16), m.spareSession, m.closedSession]);
    return env(ctx, 'POST /v1/sessions/{sessionId}/close', 'close with another session id in the path than in the body (an open session)', m, { body: { sessionId: m.mainSession }, pathValues: { sessionId: path } });
  }, 2);
  add('POST /v1/sessions/{sessionId}/close', 'session that is not this meter\'s or not open', (ctx, m, o) => {
    const [what, id] = ctx.rng.pick<[string, string]>([["another meter's session", o.mainSession], ['a session that does not exist', ctx.rng.hex(16)], ['a closed session', m.closedSession]]);
    return env(ctx, 'POST /v1/sessions/{sessionId}/close', `close ${what}`, m, { body: { sessionId: id } });
  });

  // print
  add('POST /v1/indicia', 'session that is not this meter\'s or not open', (ctx, m, o) => {
    const [what, id] = ctx.rng.pick<[string, string]>([["another meter's session", o.mainSession], ['a session that does not exist', ctx.rng.hex(16)], ['a closed session', m.closedSession]]);
    return env(ctx, 'POST /v1/indicia', `print in ${what}`, m, { body: { sessionId: id, items: [printItem(m, id, ctx.fx.letterPostage)] } });
  }, 2);
  add('POST /v1/indicia', 'item the rate table refuses', (ctx, m) => {
    const base = printItem(m, m.mainSession, ctx.fx.letterPostage);
    const [what, item] = ctx.rng.pick<[string, unknown]>([
      ['postage differs from the rate', { ...base, postage: ctx.fx.letterPostage + 1 }],
      ['unknown mail class', { ...base, rate: { mailClass: 'fuzz-class', weightOz: 1 } }],
      ['letter too heavy for its class', { ...base, rate: { mailClass: 'first-class-letter', weightOz: 1_000 } }],
      ['zoned class without a zone', { ...base, rate: { mailClass: 'priority-mail', weightOz: 1 } }],
    ]);
    // docs/protocol.md allows either a refusal or a 200 whose item 'failed' (not debited)
    const c = env(ctx, 'POST /v1/indicia', `print item: ${what}`, m, { body: { sessionId: m.mainSession, items: [item] }, expect: 'any', check: noItemPrinted });
    if (c) c.allow = { ...c.allow, acceptedBy: m.client.meterId };
    return c;
  });
  add('POST /v1/indicia', 'batch size', (ctx, m) => {
    const n = ctx.rng.pick([0, 501]);
    const item = { counter: 1, clientTime: 0, destinationZip: '', postage: 1, dynamicPassword: '' };
    return env(ctx, 'POST /v1/indicia', `print batch of ${n} items`, m, { body: { sessionId: m.mainSession, items: Array.from({ length: n }, () => item) } });
  });
  add('POST /v1/indicia', 'no idempotency key', (ctx, m) => env(ctx, 'POST /v1/indicia', 'valid print without Idempotency-Key', m, { body: validOperationBody(ctx, 'POST /v1/indicia', m), key: null }));

  // corrections
  add('POST /v1/corrections', 'original that is not this meter\'s', (ctx, m, o) => {
    const [what, id] = ctx.rng.pick<[string, number]>([["another meter's indicium", o.indiciumId], ['an indicium that does not exist', 2 ** 31], ['indicium 2^53 - 1', Number.MAX_SAFE_INTEGER], ['indicium 1e20', 1e20]]);
    return env(ctx, 'POST /v1/corrections', `correction of ${what}`, m, { body: { sessionId: m.mainSession, originalIndiciumId: id, item: printItem(m, m.mainSession, ctx.fx.letterPostage) } });
  }, 2);
  add('POST /v1/corrections', 'session that is not this meter\'s or not open', (ctx, m, o) => {
    const [what, id] = ctx.rng.pick<[string, string]>([["another meter's session", o.mainSession], ['a closed session', m.closedSession]]);
    return env(ctx, 'POST /v1/corrections', `correction in ${what}`, m, { body: { sessionId: id, originalIndiciumId: m.indiciumId, item: printItem(m, id, ctx.fx.letterPostage) } });
  });
  add('POST /v1/corrections', 'item refused after authorisation', (ctx, m) => {
    const [what, over] = ctx.rng.pick<[string, { counter?: number; clientTime?: number }]>([
      ['a counter already used', { counter: 1 }], ['a client clock 10 minutes behind', { clientTime: Date.now() - 600_000 }], ['a client clock 10 minutes ahead', { clientTime: Date.now() + 600_000 }],
    ]);
    return env(ctx, 'POST /v1/corrections', `correction (own session, own indicium) whose item has ${what}`, m, { body: { sessionId: m.mainSession, originalIndiciumId: m.indiciumId, item: printItem(m, m.mainSession, ctx.fx.letterPostage, over) } });
  }, 2);

  // balance and history: the body is checked too
  add('POST /v1/history', 'limit out of range', (ctx, m) => {
    const limit = ctx.rng.pick<unknown>([0, 501, 1.5, -1, '10', null, 1e23]);
    return env(ctx, 'POST /v1/history', `history with limit ${JSON.stringify(limit)}`, m, { body: { limit } });
  });
  add('POST /v1/balance', 'body not empty', (ctx, m) => env(ctx, 'POST /v1/balance', 'balance with a field in its body', m, { body: { [ctx.rng.pick(['x', '__proto__', 'amount'])]: 1 } }));

  // heartbeat (section 3): counters, clocks, dynamic passwords
  const hb = 'POST /v1/sessions/{sessionId}/heartbeat';
  const beat = (m: LegitMailer, sessionId: string, o: { counter?: number; clientTime?: number; meterId?: string; hmk?: Buffer; purpose?: 'heartbeat' | 'print'; dpSession?: string } = {}) => {
    const counter = o.counter ?? ++m.client.counter;
    const clientTime = o.clientTime ?? Date.now();
    const meterId = o.meterId ?? m.client.meterId;
    return { meterId, counter, clientTime, dynamicPassword: dynamicPassword(o.hmk ?? m.client.hmk, { meterId, sessionId: o.dpSession ?? sessionId, counter, clientTime, purpose: o.purpose ?? 'heartbeat' }) };
  };
  add(hb, 'counter or clock', (ctx, m) => {
    const [what, o] = ctx.rng.pick<[string, { counter?: number; clientTime?: number }]>([
      ['a counter already used', { counter: 1 }], ['a client clock 10 minutes behind', { clientTime: Date.now() - 600_000 }],
      ['a client clock 10 minutes ahead', { clientTime: Date.now() + 600_000 }], ['client time 0', { clientTime: 0 }],
    ]);
    return jsonCase(ctx, hb, `heartbeat with ${what} (valid dynamic password)`, { mailer: m, pathValues: { sessionId: m.mainSession }, body: beat(m, m.mainSession, o) });
  }, 2);
  add(hb, 'session of another meter', (ctx, m, o) => {
    const [what, sessionId, meterId] = ctx.rng.pick<[string, string, string]>([
      ["another meter's session", o.mainSession, m.client.meterId], ["own session named with another meter's id", m.mainSession, o.client.meterId],
      ['a session that does not exist', ctx.rng.hex(16), m.client.meterId], ['a closed session', m.closedSession, m.client.meterId],
    ]);
    return jsonCase(ctx, hb, `heartbeat for ${what}`, { mailer: m, pathValues: { sessionId }, body: beat(m, sessionId, { meterId }) });
  });
  add(hb, 'bad dynamic password', (ctx, m, o) => {
    // sent to the spare session only: a bad dynamic password ends the session (the protocol says so)
    const sid = m.spareSession;
    const good = beat(m, sid);
    const [what, dp] = ctx.rng.pick<[string, string]>([
      ['a print dynamic password', beat(m, sid, { counter: good.counter, clientTime: good.clientTime, purpose: 'print' }).dynamicPassword],
      ["another session's dynamic password", beat(m, sid, { counter: good.counter, clientTime: good.clientTime, dpSession: m.mainSession }).dynamicPassword],
      ["another meter's HMK", beat(m, sid, { counter: good.counter, clientTime: good.clientTime, hmk: o.client.hmk }).dynamicPassword],
      ['32 random bytes', ctx.rng.bytes(32).toString('base64')], ['16 bytes', ctx.rng.bytes(16).toString('base64')], ['64 bytes', ctx.rng.bytes(64).toString('base64')],
      ['an empty string', ''], ['"AA=="', 'AA=='], ['not base64', '!!!!'],
    ]);
    return jsonCase(ctx, hb, `heartbeat with ${what} as dynamic password`, { mailer: m, pathValues: { sessionId: sid }, body: { ...good, dynamicPassword: dp }, mayEnd: [sid] });
  }, 3);

  // registration, step 1b: the module signs for any client, but only for a module that exists
  const ch = 'POST /v1/registrations/{meterId}/challenge';
  add(ch, 'unknown module or bad nonce', (ctx) => {
    const p = ctx.rng.pick(ctx.fx.pending);
    const [what, body] = ctx.rng.pick<[string, unknown]>([
      ['a module that does not exist', { moduleSerial: 'FUZZNOSUCHMODULE', clientNonce: ctx.rng.bytes(32).toString('base64') }],
      ['an empty module serial', { moduleSerial: '', clientNonce: ctx.rng.bytes(32).toString('base64') }],
      ['a module serial with NUL', { moduleSerial: `${ctx.fx.modules[0].serial}\u0000`, clientNonce: ctx.rng.bytes(32).toString('base64') }],
      ['an empty nonce', { moduleSerial: ctx.fx.modules[0].serial, clientNonce: '' }],
      ['a 15-byte nonce', { moduleSerial: ctx.fx.modules[0].serial, clientNonce: ctx.rng.bytes(15).toString('base64') }],
      ['a 65-byte nonce', { moduleSerial: ctx.fx.modules[0].serial, clientNonce: ctx.rng.bytes(65).toString('base64') }],
      ['a nonce that is not base64', { moduleSerial: ctx.fx.modules[0].serial, clientNonce: '!!!!!!!!!!!!!!!!!!!!!!!!' }],
    ]);
    return jsonCase(ctx, ch, `challenge with ${what}`, { pathValues: { meterId: p.meterId }, body });
  }, 2);
  add(ch, 'meter that does not exist', (ctx) => jsonCase(ctx, ch, 'challenge for a meter that does not exist', { pathValues: { meterId: ctx.fx.unknownMeterId }, body: { moduleSerial: ctx.fx.modules[0].serial, clientNonce: ctx.rng.bytes(32).toString('base64') } }));

  // registration, step 1c
  const cp = 'POST /v1/registrations/{meterId}/complete';
  add(cp, 'bad HMK or password secret', (ctx) => {
    const route = ctx.routes.get(cp)!;
    const p = ctx.fx.pending[ctx.rng.int(Math.min(2, ctx.fx.pending.length))];
    const body = completionBody(ctx, route, { token: tokenOf(ctx, p.meterId) });
    const field = ctx.rng.pick(['encryptedHmk', 'encryptedPasswordSecret']);
    const [what, secret] = ctx.rng.pick(badSecrets(ctx));
    return jsonCase(ctx, cp, `registration completion, ${field}: ${what}`, { pathValues: { meterId: p.meterId }, body: { ...body, [field]: secret } });
  }, 3);
  add(cp, 'unknown module', (ctx) => {
    const route = ctx.routes.get(cp)!;
    const p = ctx.fx.pending[ctx.rng.int(Math.min(2, ctx.fx.pending.length))];
    const serial = ctx.rng.pick(['FUZZNOSUCHMODULE', '', ctx.rng.hex(8)]);
    return jsonCase(ctx, cp, `registration completion for module ${JSON.stringify(serial)}`, { pathValues: { meterId: p.meterId }, body: completionBody(ctx, route, { token: tokenOf(ctx, p.meterId), moduleSerial: serial }) });
  });
  add(cp, 'someone else\'s registration', (ctx) => {
    const route = ctx.routes.get(cp)!;
    const victim = ctx.fx.pending[ctx.fx.pending.length - 1];
    const other = ctx.fx.pending[0];
    // valid secrets, but the caller never started this registration (another one's token, or none)
    return jsonCase(ctx, cp, "registration completion of another client's pending meter (its own secrets, the other registration's token if any)", { pathValues: { meterId: victim.meterId }, body: completionBody(ctx, route, { token: tokenOf(ctx, other.meterId) }) });
  }, 2);
  add(cp, 'meter never handed out', (ctx) => {
    const route = ctx.routes.get(cp)!;
    if (!ctx.fx.poolMeters.length) return undefined;
    return jsonCase(ctx, cp, 'registration completion of a certified pool meter no registration handed out', { pathValues: { meterId: ctx.rng.pick(ctx.fx.poolMeters) }, body: completionBody(ctx, route) });
  }, 2);
  add(cp, 'already registered or unknown meter', (ctx, m) => {
    const route = ctx.routes.get(cp)!;
    const [what, meterId] = ctx.rng.pick<[string, string]>([['an active meter', m.client.meterId], ['a meter that does not exist', ctx.fx.unknownMeterId]]);
    return jsonCase(ctx, cp, `registration completion of ${what}`, { pathValues: { meterId }, body: completionBody(ctx, route) });
  });

  // verification: a changed indicium never verifies
  const vf = 'POST /v1/verify';
  add(vf, 'changed indicium', (ctx) => {
    const { data, signature } = ctx.fx.indicium;
    const flip = (b: Buffer) => {
      const c = Buffer.from(b);
      c[ctx.rng.int(c.length)] ^= 1 << ctx.rng.int(8);
      return c;
    };
    const whole = Buffer.concat([data, signature]);
    const [what, bytes] = ctx.rng.pick<[string, Buffer]>([
      ['a bit flipped in the signed data', Buffer.concat([flip(data), signature])], ['a bit flipped in the signature', Buffer.concat([data, flip(signature)])],
      ['the last byte cut', whole.subarray(0, whole.length - 1)], ['half of it', whole.subarray(0, whole.length >> 1)],
      ['a byte appended', Buffer.concat([whole, Buffer.from([0])])], ['100 bytes appended', Buffer.concat([whole, ctx.rng.bytes(100)])],
      ['all zero bytes', Buffer.alloc(whole.length)], ['nothing', Buffer.alloc(0)],
    ]);
    const record = ctx.rng.pick<boolean | undefined>([undefined, true, false]);
    return jsonCase(ctx, vf, `verify an indicium with ${what} (record ${record ?? 'absent'})`, { body: { indicium: bytes.toString('base64'), ...(record === undefined ? {} : { record }), location: 'fuzz' }, expect: 'any', check: notValid });
  }, 2);
  add(vf, 'odd location or record', (ctx) => {
    const indicium = Buffer.concat([ctx.fx.indicium.data, ctx.fx.indicium.signature]).toString('base64');
    const [what, body, expect] = ctx.rng.pick<[string, unknown, 'reject' | 'any']>([
      ['a location with control characters (record false)', { indicium, record: false, location: 'plant\u0000\u001b' }, 'any'],
      ['a 101-character location (record false)', { indicium, record: false, location: 'L'.repeat(101) }, 'reject'],
      ['record "false" as a string', { indicium, record: 'false' }, 'reject'],
      ['record 0', { indicium, record: 0 }, 'reject'],
    ]);
    return jsonCase(ctx, vf, `verify the printed indicium with ${what}`, { body, expect });
  });
  return out;
}

export function protocolStrategies(routes: Map<string, RouteSpec>): Strategy[] {
  const out: Strategy[] = [];
  for (const key of Object.keys(ENVELOPE_OPS)) if (routes.has(key)) out.push(...envelopeStrategies(key));
  for (const key of ['POST /v1/purchases', 'POST /v1/indicia', 'POST /v1/corrections']) if (routes.has(key)) out.push(...idempotencyStrategies(key));
  out.push(...semanticStrategies({ routes }));
  return out;
}
