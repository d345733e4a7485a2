import type { Knex } from 'knex';
import { endOpenSession, sessionRow } from '../db/repositories/sessions';
import { vbiError } from '@vbi/core/errors';
import type { Ledger, Step } from '../ledger/ledger';
import type { PsdPackage } from '@vbi/core/psd/psd-package';
import type { PoolMovement } from '../module/commands/master-psd';
import { envelopeMacCheck } from '../module/commands/mailer-operations';
import { checkEnvelopeState, Operated, operational, ProtocolOperation } from '../module/commands/operational';
import type { OperationalRequest, OperationalResponse } from '@vbi/core/protocol/messages';
import type { PaymentProvider } from '../payments/payment-provider';
import type { LicenceQueue } from '../licensing/licence-queue';
import { ModuleEntry, moduleDirectory } from './module-directory';

/** How long a mailer's HMK and password live from registration or re-key, unless configured: 2 years. */
export const DEFAULT_USER_SECRETS_LIFETIME_MS = 2 * 365 * 86_400_000;

/** How far a client's clock may be from the service's (dynamic passwords, print items). */
export const CLOCK_SKEW_MS = 5 * 60_000;

export interface MailerOptions {
  ledger: Ledger;
  payments: PaymentProvider;
  oaepHash: 'sha1' | 'sha256';
  spoilageLimitBps: number;
  heartbeatIntervalMs?: number;
  /** How long a session lives without a heartbeat or a print; default 3 intervals. */
  sessionTimeoutMs?: number;
  /** Lifetime of the user secrets (HMK) from registration; default 2 years. */
  userSecretsLifetimeMs?: number;
  clock?: () => number;
  /** Refills the pool of certified, unassigned meters (MeterGen); called when registration finds it empty and after each registration. */
  replenishMeters?: () => Promise<void>;
  /** Test hook: runs inside a print request's dispatch after each item but the last (a throw fails the whole request). */
  afterItem?: (index: number) => void | Promise<void>;
  paymentBackoffMs?: number;
  /** Where operational notes go (a capture left for the next pass). */
  log?: (line: string) => void;
  /**
   * The licence request queue (docs/licensing.md): a completed registration's request is
   * submitted before step 1c answers. Without one the request waits for a licensing pass.
   */
  licensing?: LicenceQueue;
}

/**
 * One operational request for the transaction engine (Ledger.run): the step's phases, each
 * handing its value on. `before` reads and locks rows and returns the input; `operation` runs in
 * the module with it; `after` writes the request's own rows and returns what the caller gets back.
 */
export interface OperationSpec<R, I, S, K> {
  type: string;
  operation: (input: I) => ProtocolOperation<R, K>;
  moduleSerial?: string;
  /** What the journal row records besides the op. */
  details?: (input: I, kept: K | undefined) => Record<string, unknown>;
  before?: (trx: Knex.Transaction) => Promise<I>;
  /** Step.sideBySide: `before` only reads and locks, the operation touches only its meter. */
  sideBySide?: boolean;
  after?: (trx: Knex.Transaction, done: { at: Date; record: { moduleSerial: string; seq: number }; response: OperationalResponse<R>; kept: K | undefined; input: I }) => Promise<S>;
  /** Step.pool: the master PSD's movement that goes with the operation (PVD, refunds). */
  pool?: (kept: K | undefined, response: OperationalResponse<R>) => PoolMovement | null;
}

/** What an operational request gave back: the response, what the module kept for the service, what `after` stored. */
export interface OperationDone<R, S, K> {
  response: OperationalResponse<R>;
  kept: K | undefined;
  stored: S;
}

/**
 * What the mailer service's sections share: the options, the clock, the database, and the two
 * ways to the module — a dispatch (operate) and a check that changes nothing (authenticate).
 */
export class MailerCore {
  readonly now: () => number;
  readonly heartbeatIntervalMs: number;
  readonly sessionTimeoutMs: number;
  /**
   * Envelopes of requests in flight whose MAC this service already checked (the idempotency
   * scope does it first), with the package it was checked against: one check per request before
   * the dispatch, which checks everything again inside the module.
   */
  private readonly authenticated = new WeakMap<OperationalRequest, PsdPackage>();

  constructor(readonly opts: MailerOptions) {
    this.now = opts.clock ?? Date.now;
    this.heartbeatIntervalMs = opts.heartbeatIntervalMs ?? 10_000;
    this.sessionTimeoutMs = opts.sessionTimeoutMs ?? 3 * this.heartbeatIntervalMs;
  }

  get db(): Knex {
    return this.opts.ledger.db;
  }

  get ledger(): Ledger {
    return this.opts.ledger;
  }

  modules(): Promise<ModuleEntry[]> {
    return moduleDirectory({ db: this.db, modules: this.ledger.servingModules(), oaepHash: this.opts.oaepHash });
  }

  /** One operational request: envelope checks and the operation in one module dispatch. */
  async operate<R extends Record<string, unknown>, I = void, S = void, K = undefined>(env: OperationalRequest, spec: OperationSpec<R, I, S, K>): Promise<OperationDone<R, S, K>> {
    const step: Step<Operated<R, K>, I, S> = {
      meterId: env.meterId, moduleSerial: spec.moduleSerial, type: spec.type, sideBySide: spec.sideBySide,
      before: spec.before,
      execute: (pkg, ctx, input) => operational(env, spec.operation(input))(pkg, ctx),
      after: spec.after
        ? (trx, o, at, input) => spec.after!(trx, { at, record: o.record, response: o.result.response, kept: o.result.kept, input })
        : undefined,
      pool: spec.pool ? (o) => spec.pool!(o.result.kept, o.result.response) : undefined,
      details: (o, input) => ({ op: env.op, ...spec.details?.(input, o.result.kept) }),
      receipt: (o) => o.result.response.receipt,
    };
    const out = await this.ledger.run(step);
    return { response: out.result.response, kept: out.result.kept, stored: out.stored };
  }

  /**
   * Only that the meter's HMK signed this envelope (no challenge check: a retry of an answered
   * request carries a used challenge and must still be recognised). Changes nothing; returns the
   * package it checked against, and checks one envelope once.
   */
  async authenticate(env: OperationalRequest): Promise<PsdPackage> {
    const done = this.authenticated.get(env);
    if (done) return done;
    const pkg = await this.ledger.inspect(env.meterId, envelopeMacCheck(env));
    this.authenticated.set(env, pkg);
    return pkg;
  }

  /**
   * The module's envelope checks (MAC with the HMK in the token, challenge, registers) without
   * a dispatch: nothing changes and the challenge stays valid. Used before side effects outside
   * the module (charging a payment); the dispatch that follows checks everything again.
   */
  async preauthenticate(env: OperationalRequest): Promise<PsdPackage> {
    const pkg = await this.authenticate(env);
    checkEnvelopeState(env, pkg, this.now());
    return pkg;
  }

  /** The meter's open session, checked live (SESSION_NOT_FOUND, SESSION_ENDED); locked with `lock`. */
  async liveSession(db: Knex, sessionId: string, meterId: string, lock = false): Promise<LiveSession> {
    const s = await sessionRow(db, sessionId, meterId, lock);
    if (!s) throw vbiError('SESSION_NOT_FOUND', `no session ${sessionId} for meter ${meterId}`);
    if (s.state !== 'open') throw vbiError('SESSION_ENDED', `session ${sessionId} is ${s.state}: ${s.end_reason ?? ''}`);
    if (this.now() - s.last_seen_at.getTime() > s.timeout_ms) {
      // Inside a transaction that holds the row, the caller records the end after rolling back.
      if (!lock) await this.endSession(sessionId, 'missed heartbeat');
      throw vbiError('SESSION_ENDED', `session ${sessionId} missed its heartbeat`);
    }
    return s;
  }

  /** A dynamic-password counter must rise above the session's; the client's clock within CLOCK_SKEW_MS. */
  checkCounter(session: { counter: number }, counter: number, clientTime: number): void {
    if (!Number.isSafeInteger(counter) || counter <= session.counter) throw vbiError('STALE_CHALLENGE', `counter ${counter} is not above ${session.counter}`);
    if (!Number.isSafeInteger(clientTime) || Math.abs(clientTime - this.now()) > CLOCK_SKEW_MS) throw vbiError('BAD_REQUEST', 'client clock is more than 5 minutes off');
  }

  async endSession(sessionId: string, reason: string): Promise<void> {
    await endOpenSession(this.db, sessionId, reason);
  }
}

/** A session row as the sections read it. */
export interface LiveSession {
  session_id: string;
  wrapped_session_key: Buffer;
  counter: number;
  last_seen_at: Date;
  timeout_ms: number;
}
