import type { Knex } from 'knex';
import type { HsmModule } from '@vbi/server/hsm/hsm-module';
import { verifyJournal } from '@vbi/server/ledger/journal-verify';
import { conservation } from '@vbi/server/ledger/conservation';
import { RouteSpec, SchemaChecker, routesOf } from './api-routes';
import { checkAnswer, errorCodeOf } from './answer-checks';
import { CaseContext, FuzzCase, Strategy } from './cases';
import { DbState, captureState, diffState } from './db-state';
import type { DocumentedCode } from './error-catalogue';
import { genericStrategies } from './generic-strategies';
import { RawAnswer, parseJson, sendRaw } from './http';
import { Fixtures, LegitMailer, createFixtures, openSession, printLetter, registerMailer } from './legit-mailers';
import { Prng } from './prng';
import { nextChallengeOf } from './protocol';
import { protocolStrategies } from './protocol-strategies';
import { FindingLog, FuzzReport, abbreviate } from './report';

/**
 * The fuzzer: given a running service, it
 *  1. reads the OpenAPI document and sets up legitimate mailers through the protocol (valid
 *     requests only: the setup phase);
 *  2. sends `requests` mutated requests, drawn from the seed, that must all be refused (the
 *     fuzzing phase), checking after each one that the answer is well-formed and leaks nothing,
 *     that no module left the rotation and that nothing in the database changed;
 *  3. checks that the service still serves the legitimate mailers and a new one, that the journal
 *     verifies and that conservation holds (the final phase, valid requests again).
 * It returns a report; it asserts nothing itself.
 */
export interface ModuleView {
  serial: string;
  state: string;
  inRotation: boolean;
  reason?: string | null;
}

export interface FuzzTarget {
  /** Base URL of the HTTP API, e.g. http://127.0.0.1:43123 */
  url: string;
  /** The service's database (read only, for the state checks). */
  db: Knex;
  /** The service's modules as its process sees them (state machine and rotation), if in reach. */
  moduleStatus?: () => ModuleView[];
  /** A module for the journal verification and conservation check at the end. */
  hsm?: HsmModule;
}

export interface FuzzOptions {
  seed: number;
  /** Requests of the fuzzing phase. */
  requests: number;
  /** Stop the fuzzing phase after this long even if requests remain. */
  seconds?: number;
  /** docs/errors.md, parsed (error-catalogue.ts). */
  errorCatalogue: Map<string, DocumentedCode>;
  /** Legitimate mailers to set up (at least 2). */
  mailers?: number;
  /** Registrations left at step 1a (at least 2). */
  pendingRegistrations?: number;
  /** GET /v1/health every this many requests. */
  healthEvery?: number;
  /** Progress lines. */
  log?: (line: string) => void;
}

const SERVING = new Set(['Idle', 'User']);

export async function runFuzzer(target: FuzzTarget, opts: FuzzOptions): Promise<FuzzReport> {
  const started = Date.now();
  const log = opts.log ?? (() => undefined);
  const findings = new FindingLog();
  const catalogue = opts.errorCatalogue;

  // --- the document and the setup phase -----------------------------------------------------
  const docAnswer = await sendRaw(target.url, { method: 'GET', path: '/v1/openapi.json', headers: {} });
  const doc = parseJson(docAnswer.text) as { paths?: Record<string, Record<string, never>> } | undefined;
  if (docAnswer.status !== 200 || !doc?.paths) throw new Error(`GET /v1/openapi.json answered ${docAnswer.status}`);
  const routeList = routesOf(doc);
  const routes = new Map<string, RouteSpec>(routeList.map((r) => [r.key, r]));
  log(`${routeList.length} routes in the OpenAPI document; setting up mailers`);
  const fx = await createFixtures(target.url, target.db, { mailers: Math.max(2, opts.mailers ?? 3), pending: Math.max(2, opts.pendingRegistrations ?? 3) });
  log(`setup done in ${Date.now() - started} ms: mailers ${fx.mailers.map((m) => m.client.meterId).join(', ')}; pending ${fx.pending.map((p) => p.meterId).join(', ')}; pool ${fx.poolMeters.join(', ')}`);

  // --- the fuzzing phase --------------------------------------------------------------------
  const rng = new Prng(opts.seed);
  let keys = 0;
  const ctx: CaseContext = { rng, fx, routes, schemas: new SchemaChecker(), key: () => `fuzz-${opts.seed}-${++keys}` };
  const strategies = [...genericStrategies(routeList), ...protocolStrategies(routes)];
  // every strategy once, in a seeded order (so every route and every kind of mutation is reached
  // in any run longer than this list), then strategies drawn by weight
  const firstPass: Strategy[] = rng.shuffle(strategies);
  const weighted = strategies.map((s) => ({ weight: s.weight, value: s }));
  log(`${strategies.length} strategies; the first ${strategies.length} requests use each once`);

  const owned = fx.ownedMeterIds();
  const initial = await captureState(target.db, owned);
  let baseline = initial;
  const byRoute: Record<string, number> = Object.fromEntries(routeList.map((r) => [r.key, 0]));
  const byStatus: Record<string, number> = {};
  const byFamily: Record<string, number> = {};
  const deadline = opts.seconds ? started + opts.seconds * 1000 : Infinity;
  let modulesOk = true;
  let sent = 0;

  const draw = (i: number): FuzzCase | undefined => {
    for (let attempt = 0; attempt < 20; attempt++) {
      const s = attempt === 0 && i < firstPass.length ? firstPass[i] : rng.weighted(weighted);
      const c = s.build(ctx);
      if (c) return { ...c, strategy: s.name };
    }
    return undefined;
  };

  for (let i = 0; i < opts.requests && Date.now() < deadline; i++) {
    const c = draw(i);
    if (!c) continue;
    const answer = await sendRaw(target.url, c.request);
    sent++;
    byRoute[c.route] = (byRoute[c.route] ?? 0) + 1;
    byStatus[String(answer.status)] = (byStatus[String(answer.status)] ?? 0) + 1;
    byFamily[c.family] = (byFamily[c.family] ?? 0) + 1;
    const example = { route: c.route, mutation: c.label, request: describeRequest(c), answer: `${answer.status} ${abbreviate(answer.text, 300)}` };
    const code = errorCodeOf(answer);

    // the strategy tells apart different bugs behind the same symptom on one route; while a
    // module is out of rotation, its 503s are one consequence, whatever the strategy
    const tag = ` [${c.strategy}]`;
    const cascade = !modulesOk && answer.status === 503;
    for (const p of checkAnswer(answer, { route: c.route, method: c.request.method }, catalogue)) {
      const kind = !p.kind.startsWith('5xx') ? p.kind : cascade ? `${p.kind} (a module was out of rotation)` : p.kind + tag;
      findings.add({ ...example, ...p, kind });
    }
    const accepted = answer.status >= 200 && answer.status < 300;
    if (accepted && c.expect === 'reject') {
      findings.add({ ...example, kind: `accepted an invalid request${tag}`, detail: `a request that must be refused was answered ${answer.status}`, status: answer.status });
    }
    const extra = c.check?.(answer);
    if (extra) findings.add({ ...example, kind: `check failed${tag}`, detail: extra, status: answer.status, code });

    // invariant 4, as the service's process sees it: reported when a module leaves, once
    const bad = (target.moduleStatus?.() ?? []).filter((m) => !SERVING.has(m.state) || !m.inRotation);
    if (bad.length && modulesOk) {
      findings.add({ ...example, kind: 'module left the rotation', detail: `after this request: ${bad.map((m) => `${m.serial} ${m.state}${m.inRotation ? '' : ' (out of rotation)'}${m.reason ? `: ${m.reason}` : ''}`).join('; ')}`, status: answer.status, code });
    }
    modulesOk = bad.length === 0;

    // invariant 5: what this request changed
    const now = await captureState(target.db, owned);
    const changes = diffState(baseline, now, accepted ? c.allow : { ...c.allow, acceptedBy: undefined });
    if (changes.length && !(accepted && c.expect === 'reject')) {
      // by what changed: one cause (say, keys stored before authentication) shows under many strategies
      findings.add({
        ...example, kind: `state changed: ${[...new Set(changes.map((ch) => ch.what))].join(', ')}`, status: answer.status, code,
        detail: `${accepted ? 'an accepted' : 'a refused'} request changed: ${changes.map((ch) => ch.detail).join('; ')}`,
      });
    }
    adoptOrLose(fx, baseline, now, c, answer);
    baseline = now;

    if ((i + 1) % (opts.healthEvery ?? 50) === 0) {
      await healthCheck(target, findings, `after ${i + 1} requests`);
      log(`${i + 1} requests, ${findings.size} finding(s) so far`);
    }
  }
  log(`fuzzing phase: ${sent} requests in ${Date.now() - started} ms`);

  // --- after the fuzzing phase ------------------------------------------------------------
  const after = await captureState(target.db, owned);
  for (const ch of diffState(baseline, after)) findings.add({ route: '-', kind: `state changed: ${ch.what}`, detail: `after the last answer: ${ch.detail}` });
  if (after.keysInProgress > 0) findings.add({ route: '-', kind: 'idempotency key left in progress', detail: `${after.keysInProgress} idempotency_keys row(s) still 'in_progress' after every answer was received` });
  logSummary(log, initial, after);
  await healthCheck(target, findings, 'after the fuzzing phase');
  await finalChecks(target, fx, findings, log);

  return {
    seed: opts.seed, requested: opts.requests, sent, elapsedMs: Date.now() - started, byRoute, byStatus, byFamily,
    uncovered: routeList.filter((r) => !byRoute[r.key]).map((r) => r.key), findings: findings.list(),
  };
}

/** The request, abbreviated for the report. */
function describeRequest(c: FuzzCase): string {
  const headers = Object.entries(c.request.headers).map(([k, v]) => `${k}: ${abbreviate(v, 40)}`).join(', ');
  const body = c.request.body === undefined ? '(no body)' : abbreviate(c.request.body.toString('utf8'), 360);
  return `${c.request.method} ${abbreviate(c.request.path, 120)} [${headers}] ${body}`;
}

/**
 * Keeps the fuzzer's copy of a mailer's challenge right: an accepted request that moved the
 * meter gives the new challenge; a meter that moved without one (a refused request changed its
 * package) has lost its challenge, and its MAC-valid cases can no longer reach past the
 * challenge check.
 */
function adoptOrLose(fx: Fixtures, before: DbState, now: DbState, c: FuzzCase, answer: RawAnswer): void {
  for (const m of fx.mailers) {
    const id = m.client.meterId;
    if (before.meters[id]?.package === now.meters[id]?.package) continue;
    const next = answer.status >= 200 && answer.status < 300 && c.mailer === m ? nextChallengeOf(parseJson(answer.text)) : undefined;
    if (next) {
      m.usedChallenges.push(m.client.challenge);
      m.client.challenge = next.challenge;
      m.client.registers = next.registers;
    } else {
      m.desynced = true;
    }
  }
}

/** Invariant 4 from outside: /v1/health is 200 and shows every module Idle or User; the module table agrees. */
async function healthCheck(target: FuzzTarget, findings: FindingLog, when: string): Promise<void> {
  const h = await sendRaw(target.url, { method: 'GET', path: '/v1/health', headers: {} });
  const j = parseJson(h.text) as { modules?: Array<{ serial?: string; state?: string; inRotation?: boolean; reason?: string }>; database?: string } | undefined;
  const bad = (j?.modules ?? []).filter((m) => !SERVING.has(String(m.state)) || m.inRotation === false);
  if (h.status !== 200 || bad.length || !j?.modules?.length) {
    findings.add({
      route: 'GET /v1/health', kind: 'health', status: h.status,
      detail: `${when}: /v1/health answered ${h.status}; ${bad.map((m) => `${m.serial} ${m.state}${m.inRotation === false ? ' (out of rotation)' : ''}${m.reason ? `: ${m.reason}` : ''}`).join('; ') || abbreviate(h.text, 200)}`,
    });
  }
  const out = await target.db('modules').where({ in_rotation: false }).select('module_serial', 'out_reason');
  if (out.length) {
    findings.add({ route: '-', kind: 'module out of rotation (module table)', detail: `${when}: ${out.map((r: { module_serial: string; out_reason: string | null }) => `${r.module_serial}: ${r.out_reason ?? ''}`).join('; ')}` });
  }
}

function logSummary(log: (l: string) => void, initial: DbState, after: DbState): void {
  const changed = diffState(initial, after);
  log(changed.length ? `database state moved during the fuzzing phase: ${changed.length} change(s)` : 'database state unchanged by the fuzzing phase');
}

/** Invariant 6: the legitimate mailers and a new one are served; the ledger verifies. */
async function finalChecks(target: FuzzTarget, fx: Fixtures, findings: FindingLog, log: (l: string) => void): Promise<void> {
  const fail = (route: string, what: string, e: unknown) => findings.add({ route, kind: `final check: ${what}`, detail: e instanceof Error ? e.message : String(e) });
  const serveable = async (m: LegitMailer, label: string) => {
    const module = fx.modules.find((x) => x.serial === m.client.moduleSerial) ?? fx.modules[0];
    const expected = { ...m.client.registers };
    const bal = await m.client.op('/v1/balance', 'balance', {});
    if (bal.status !== 200) throw new Error(`${label}: balance answered ${bal.status} ${JSON.stringify(bal.json)?.slice(0, 200)}`);
    if (bal.json.result.ascending !== expected.ascending || bal.json.result.descending !== expected.descending) {
      throw new Error(`${label}: registers ${JSON.stringify(bal.json.result)} differ from the client's ${JSON.stringify(expected)}`);
    }
    const session = await openSession(m, module.serial, module.transportKey);
    await printLetter(m, session, fx.letterPostage, `final-${m.client.meterId}-print`);
  };
  for (const m of fx.mailers) {
    if (m.desynced) {
      log(`final check: ${m.name} (${m.client.meterId}) lost its challenge to a refused request; skipped`);
      continue;
    }
    try {
      await serveable(m, `${m.name} (${m.client.meterId})`);
    } catch (e) {
      fail('POST /v1/indicia', `legitimate mailer ${m.name}`, e);
    }
  }
  try {
    const fresh = await registerMailer(target.url, 'Fuzz Mailer After', fx.modules);
    const buy = await fresh.client.op('/v1/purchases', 'purchase', { amount: 10_000, payment: { kind: 'card', token: 'tok_approve' } }, { 'Idempotency-Key': 'final-fresh-buy' });
    if (buy.status !== 200) throw new Error(`purchase answered ${buy.status} ${JSON.stringify(buy.json)?.slice(0, 200)}`);
    await serveable(fresh, 'new mailer');
  } catch (e) {
    fail('POST /v1/registrations', 'new mailer registers, buys and prints', e);
  }
  await healthCheck(target, findings, 'at the end');
  const keys = await target.db('idempotency_keys').where({ state: 'in_progress' }).count({ n: '*' }).first();
  if (Number(keys?.n ?? 0) > 0) findings.add({ route: '-', kind: 'idempotency key left in progress', detail: `${keys?.n} idempotency_keys row(s) 'in_progress' at the end` });
  if (target.hsm) {
    try {
      const report = await verifyJournal({ db: target.db, hsm: target.hsm });
      if (!report.ok) {
        findings.add({ route: '-', kind: 'journal does not verify', detail: report.findings.slice(0, 5).map((f) => `${f.kind}${f.meterId ? ` ${f.meterId}` : ''}: ${f.reason}`).join('; ') });
      }
      const balance = await conservation(target.db, { hsm: target.hsm });
      if (balance.violations.length) findings.add({ route: '-', kind: 'conservation violated', detail: balance.violations.slice(0, 5).join('; ') });
    } catch (e) {
      fail('-', 'journal verification', e);
    }
  }
}
