import { createHash, randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { isVbiError, vbiError, VbiError } from '../errors';
import { Ledger } from '../ledger/ledger';
import { HsmModule } from '../hsm/hsm-module';
import { PsdPackage } from '../psd/psd-package';
import { assertMills } from '../ledger/amounts';
import { debitPool, recordRefund, reservePool } from '../ledger/pool-registers';
import { openPackage } from '../module/package-seal';
import { operational, Operation } from '../module/commands/operational';
import { registerUserSecrets } from '../module/commands/registration';
import { closeSession, hmkChain, inquiry, openSession, purchase, refundOperation } from '../module/commands/mailer-operations';
import { printSessionItem } from '../module/commands/print-item';
import { postageValueDownload } from '../module/commands/postage-value-download';
import { Mailpiece } from '../module/commands/create-indicium';
import {
  OperationalRequest, OperationalResponse, PrintedItem, Receipt, dynamicPasswordInput, registrationChallengeBytes, requestMacInput,
} from '../protocol/messages';
import { PaymentProvider } from '../payments/payment-provider';
import { chargeWithRetry } from '../payments/charge';
import { computePostage } from '../rates/postage';
import { ItemType } from '../indicium/fields';
import { ModuleEntry, moduleDirectory } from './module-directory';

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
  /** Test hook: runs after each printed or voided item of a batch. */
  afterItem?: (index: number) => void | Promise<void>;
  paymentBackoffMs?: number;
}

export interface PrintItemRequest {
  counter: number;
  clientTime: number;
  destinationZip: string;
  postage: number;
  rate?: { mailClass: string; weightOz: number; zone?: number };
  itemType?: ItemType;
  dateOfMailing?: string;
  dynamicPassword: string;
}


const CLOCK_SKEW_MS = 5 * 60_000;

/** Registration tokens are kept only as their SHA-256. */
function tokenHash(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/**
 * The mailer's service (docs/protocol.md) on the transaction engine: registration, the
 * operational protocol, continuous sessions with dynamic passwords, purchases, printing.
 * Every step that touches a package is one module dispatch in one database transaction.
 */
export class MailerService {
  private readonly now: () => number;
  readonly heartbeatIntervalMs: number;
  readonly sessionTimeoutMs: number;
  /**
   * Envelopes of requests in flight whose MAC this service already checked (the idempotency
   * scope does it first), with the package it was checked against: one check per request before
   * the dispatch, which checks everything again inside the module.
   */
  private readonly authenticated = new WeakMap<OperationalRequest, PsdPackage>();

  constructor(private readonly opts: MailerOptions) {
    this.now = opts.clock ?? Date.now;
    this.heartbeatIntervalMs = opts.heartbeatIntervalMs ?? 10_000;
    this.sessionTimeoutMs = opts.sessionTimeoutMs ?? 3 * this.heartbeatIntervalMs;
  }

  private get db(): Knex {
    return this.opts.ledger.db;
  }

  modules(): Promise<ModuleEntry[]> {
    return moduleDirectory({ db: this.db, modules: this.opts.ledger.modules(), oaepHash: this.opts.oaepHash });
  }

  // --- 1. registration ------------------------------------------------------------------

  /** 1a: account, license request, a certified meter from the MeterGen pool. */
  async register(req: { name: string; licensingZip: string; returnAddress: string[] }): Promise<{ registrationId: number; registrationToken: string; accountId: number; meterId: string; modules: ModuleEntry[] }> {
    // names and addresses are compared and printed: one Unicode form (NFC)
    const name = req.name.normalize('NFC');
    const returnAddress = req.returnAddress.map((l) => l.normalize('NFC'));
    const accountId = await this.opts.ledger.createAccount({ name, licensingZip: req.licensingZip });
    await this.db('accounts').where({ account_id: accountId }).update({ return_address: returnAddress });
    let meterId: string;
    try {
      try {
        ({ meterId } = await this.opts.ledger.assignMeter({ accountId }));
      } catch (e) {
        if (!isVbiError(e, 'NO_METER_AVAILABLE') || !this.opts.replenishMeters) throw e;
        await this.opts.replenishMeters();
        ({ meterId } = await this.opts.ledger.assignMeter({ accountId }));
      }
    } catch (e) {
      // no meter was assigned: a refused registration leaves no account behind
      await this.db('accounts').where({ account_id: accountId }).del().catch(() => undefined);
      throw e;
    }
    void this.opts.replenishMeters?.().catch(() => undefined);
    const registrationToken = randomBytes(16).toString('hex');
    const [row] = await this.db('license_requests').insert({
      account_id: accountId, meter_id: meterId, licensing_zip: req.licensingZip, token_hash: tokenHash(registrationToken),
    }).returning('request_id');
    return { registrationId: row.request_id, registrationToken, accountId, meterId, modules: await this.modules() };
  }

  /** 1b: the module signs the client's nonce with its identity key. */
  async challenge(req: { meterId: string; moduleSerial: string; clientNonce: string }): Promise<ModuleEntry & { moduleSerial: string; signature: string }> {
    const meter = await this.db('meters').where({ meter_id: req.meterId }).first('meter_id');
    if (!meter) throw vbiError('UNKNOWN_METER', `no meter ${req.meterId}`);
    const entry = (await this.modules()).find((m) => m.serial === req.moduleSerial);
    const module = this.opts.ledger.modules().find((m) => m.serial === req.moduleSerial);
    if (!module) throw vbiError('UNKNOWN_MODULE', `no module ${req.moduleSerial} in this service`);
    if (!entry) throw vbiError('NO_MODULE', `module ${req.moduleSerial} is not available`);
    const nonce = Buffer.from(req.clientNonce, 'base64');
    if (nonce.length < 16 || nonce.length > 64) throw vbiError('BAD_REQUEST', 'clientNonce must be 16 to 64 bytes');
    const signature = await module.identitySign(registrationChallengeBytes({ meterId: req.meterId, clientNonce: req.clientNonce, transportKeySpki: entry.transportKey }));
    return { ...entry, moduleSerial: entry.serial, signature: signature.toString('base64') };
  }

  /** 1c: HMK and password secret into the package, meter active, first challenge. */
  async complete(req: { meterId: string; moduleSerial: string; registrationToken: string; encryptedHmk: string; encryptedPasswordSecret: string }): Promise<{ challenge: string; hmkProof: string; registers: { ascending: number; descending: number } }> {
    let requestId = 0;
    const out = await this.opts.ledger.run({
      meterId: req.meterId, moduleSerial: req.moduleSerial, type: 'registration',
      // only the meter step 1a handed out, to the holder of its token, once
      before: async (trx) => {
        const lr = await trx('license_requests').where({ meter_id: req.meterId, token_hash: tokenHash(req.registrationToken) })
          .whereNull('completed_at').forUpdate().first('request_id');
        if (!lr) throw vbiError('REGISTRATION_UNKNOWN', `no open registration for meter ${req.meterId} with that token`);
        requestId = lr.request_id;
      },
      after: async (trx, _o, at) => {
        await trx('license_requests').where({ request_id: requestId }).update({ completed_at: at });
      },
      execute: registerUserSecrets({
        encryptedHmk: Buffer.from(req.encryptedHmk, 'base64'), encryptedPasswordSecret: Buffer.from(req.encryptedPasswordSecret, 'base64'),
        userSecretsLifetimeMs: this.opts.userSecretsLifetimeMs ?? 2 * 365 * 86_400_000,
      }),
      details: () => ({ moduleSerial: req.moduleSerial }),
    });
    return {
      challenge: out.result.challenge.toString('base64'), hmkProof: out.result.hmkProof.toString('base64'),
      registers: { ascending: out.package.ascendingRegister, descending: out.package.descendingRegister },
    };
  }

  // --- 2. operational requests --------------------------------------------------------------

  /** One operational request: envelope checks and the operation in one module dispatch. */
  private async operate<R extends Record<string, unknown>>(env: OperationalRequest, op: Operation<R>, extra: {
    type: string; moduleSerial?: string; details?: Record<string, unknown>;
    before?: (trx: Knex.Transaction) => Promise<void>; after?: (trx: Knex.Transaction, at: Date, record: { moduleSerial: string; seq: number }) => Promise<void>;
  }): Promise<OperationalResponse<R>> {
    const out = await this.opts.ledger.run<OperationalResponse<R>>({
      meterId: env.meterId, moduleSerial: extra.moduleSerial, type: extra.type,
      execute: operational(env, op), before: extra.before,
      after: extra.after ? (trx, o, at) => extra.after!(trx, at, o.record) : undefined,
      details: () => ({ op: env.op, ...extra.details }),
    });
    return out.result;
  }

  balance(env: OperationalRequest): Promise<OperationalResponse> {
    return this.operate(env, inquiry, { type: 'inquiry' });
  }

  async history(env: OperationalRequest<{ limit?: number }>): Promise<OperationalResponse> {
    let entries: Array<Record<string, unknown>> = [];
    return this.operate(env, async (pkg, ctx) => ({ ...(await inquiry(pkg, ctx)), result: { entries } }), {
      type: 'inquiry',
      before: async (trx) => {
        const rows = await trx('journal').where({ meter_id: env.meterId }).orderBy('journal_id', 'desc').limit(env.body.limit ?? 50);
        entries = rows.map((r) => ({ time: r.created_at.toISOString(), type: r.tx_type, amount: r.amount, ascending: r.ascending_register, descending: r.descending_register }));
      },
    });
  }

  async refund(env: OperationalRequest<{ kind: 'partial' | 'full'; amount?: number; reason: string }>): Promise<OperationalResponse> {
    const { kind, reason } = env.body;
    const amount = kind === 'partial' ? assertMills(env.body.amount) : undefined;
    if (kind === 'full' && env.body.amount !== undefined) throw vbiError('BAD_REQUEST', 'a full refund takes no amount');
    let refunded = 0;
    return this.operate(env, async (pkg, ctx) => {
      const out = await refundOperation({ kind, amount, spoilageLimitBps: this.opts.spoilageLimitBps })(pkg, ctx);
      refunded = out.result.refunded as number;
      return out;
    }, {
      type: 'refund', details: { kind, reason },
      after: (trx, at, record) => recordRefund(trx, { meterId: env.meterId, kind, amount: refunded, reason, record, at }),
    });
  }

  // --- purchases ----------------------------------------------------------------------------

  /**
   * Purchase (PVD paid by the mailer): the payment is charged first (three attempts on a link
   * failure); a decline changes nothing; an approved payment becomes a PVD in the same dispatch
   * that answers the request; a check stays pending until `settle` finds it cleared.
   */
  async purchase(env: OperationalRequest<{ amount: number; payment: { kind: 'card' | 'ach' | 'check'; token: string } }>): Promise<OperationalResponse> {
    const amount = assertMills(env.body.amount);
    // Nobody is charged for a message that would not pass the module's checks, nor for a
    // download the meter or the pool would refuse: the same download rules, run on the package
    // as it is now (the dispatch that follows checks everything again).
    const pkg = await this.preauthenticate(env);
    await postageValueDownload({ amount })(pkg);
    const pool = await this.db('pool').where({ pool_id: 1 }).first('available');
    if (!pool || pool.available < amount) throw vbiError('POOL_EXHAUSTED', `the pool cannot supply ${amount} mills now`);
    const [row] = await this.db('payments').insert({ meter_id: env.meterId, amount, provider: 'sandbox', status: 'pending', method_kind: env.body.payment.kind }).returning('payment_id');
    const paymentId: number = row.payment_id;
    let charge;
    try {
      charge = await chargeWithRetry(this.opts.payments, { paymentId: String(paymentId), amount, method: env.body.payment }, { attempts: 3, backoffMs: this.opts.paymentBackoffMs ?? 250 });
    } catch (e) {
      await this.db('payments').where({ payment_id: paymentId }).update({ status: 'declined', updated_at: this.db.fn.now() });
      throw e;
    }
    await this.db('payments').where({ payment_id: paymentId }).update({ provider_ref: charge.providerRef, status: charge.status, updated_at: this.db.fn.now() });
    try {
      return await this.applyPayment(env, { paymentId, amount, status: charge.status });
    } catch (e) {
      // The download was refused (a concurrent request took the challenge or the funds): nothing
      // was stored, so the charge is voided at the processor and the payment recorded as voided.
      if (isVbiError(e) && e.kind === 'user') {
        await this.opts.payments.void(charge.providerRef);
        await this.db('payments').where({ payment_id: paymentId }).update({ status: 'voided', updated_at: this.db.fn.now() });
      }
      throw e;
    }
  }

  /**
   * A meter's package opened (MAC-checked) by a module for checks that change nothing — no
   * dispatch, no checkpoint: heartbeats and the envelope check before a payment.
   */
  private async readPackage(meterId: string): Promise<{ hsm: HsmModule; pkg: PsdPackage }> {
    const meter = await this.db('meters').where({ meter_id: meterId }).first('package');
    if (!meter) throw vbiError('UNKNOWN_METER', `no meter ${meterId}`);
    const hsm = this.opts.ledger.anyModule();
    return { hsm, pkg: await openPackage(hsm, meter.package, meterId) };
  }

  /**
   * Only that the meter's HMK signed this envelope (no challenge check: a retry of an answered
   * request carries a used challenge and must still be recognised). Changes nothing; returns the
   * package it checked against, and checks one envelope once.
   */
  async authenticate(env: OperationalRequest): Promise<PsdPackage> {
    const done = this.authenticated.get(env);
    if (done) return done;
    const { hsm, pkg } = await this.readPackage(env.meterId);
    if (!(await hsm.verifyHmac({ keyChain: hmkChain(pkg), data: requestMacInput(env), mac: Buffer.from(env.mac, 'base64') }))) {
      throw vbiError('BAD_MAC', 'request HMAC does not verify with the meter HMK');
    }
    this.authenticated.set(env, pkg);
    return pkg;
  }

  /**
   * The module's envelope checks (MAC with the HMK in the token, challenge, registers) without
   * a dispatch: nothing changes and the challenge stays valid. Used before side effects outside
   * the module (charging a payment); the dispatch that follows checks everything again.
   */
  private async preauthenticate(env: OperationalRequest): Promise<PsdPackage> {
    const pkg = await this.authenticate(env);
    const challenge = Buffer.from(env.challenge, 'base64');
    if (!challenge.equals(pkg.secrets.lastChallenge) || challenge.length === 0) throw vbiError('STALE_CHALLENGE', 'request does not carry the challenge the module issued last');
    if (env.registers.ascending !== pkg.ascendingRegister || env.registers.descending !== pkg.descendingRegister) {
      throw vbiError('REGISTER_MISMATCH', "the client's register copy differs from the meter's");
    }
    return pkg;
  }

  /**
   * A payment that is not yet in the meter: a pending check is polled, and once approved (or an
   * approved payment whose download failed, e.g. on a concurrent request) its value is downloaded.
   */
  async settle(env: OperationalRequest<{ paymentId: number }>): Promise<OperationalResponse> {
    // only the meter's owner learns anything about its payments or makes the provider be asked
    await this.authenticate(env);
    const p = await this.db('payments').where({ payment_id: env.body.paymentId, meter_id: env.meterId }).first();
    if (!p) throw vbiError('BAD_REQUEST', `no payment ${env.body.paymentId} for meter ${env.meterId}`);
    if (p.status === 'applied') throw vbiError('BAD_REQUEST', `payment ${p.payment_id} is already applied`);
    if (p.status === 'declined') throw vbiError('PAYMENT_DECLINED', `payment ${p.payment_id} was declined`);
    if (p.status === 'voided') throw vbiError('BAD_REQUEST', `payment ${p.payment_id} was voided`);
    if (p.status === 'pending' && !p.provider_ref) throw vbiError('BAD_REQUEST', `payment ${p.payment_id} is still being charged`);
    const polled = p.status === 'approved' ? { status: 'approved' as const } : await this.opts.payments.poll(p.provider_ref);
    if (polled.status === 'declined') {
      await this.db('payments').where({ payment_id: p.payment_id }).update({ status: 'declined', updated_at: this.db.fn.now() });
      throw vbiError('PAYMENT_DECLINED', `payment ${p.payment_id} was declined (returned check)`);
    }
    return this.applyPayment(env, { paymentId: p.payment_id, amount: p.amount, status: polled.status });
  }

  private applyPayment(env: OperationalRequest, pay: { paymentId: number; amount: number; status: 'approved' | 'pending' }): Promise<OperationalResponse> {
    return this.operate(env, purchase(pay), {
      type: pay.status === 'approved' ? 'pvd' : 'inquiry', details: { paymentId: pay.paymentId, amount: pay.amount, status: pay.status },
      before: async (trx) => {
        const p = await trx('payments').where({ payment_id: pay.paymentId }).forUpdate().first('status');
        if (p.status === 'applied') throw vbiError('BAD_REQUEST', `payment ${pay.paymentId} is already applied`);
        if (pay.status === 'approved') await reservePool(trx, pay.amount);
      },
      after: async (trx, _at, record) => {
        if (pay.status !== 'approved') return;
        await debitPool(trx, pay.amount);
        await trx('payments').where({ payment_id: pay.paymentId }).update({ status: 'applied', applied_checkpoint_seq: record.seq, updated_at: trx.fn.now() });
      },
    });
  }

  // --- 3. sessions --------------------------------------------------------------------------

  async openSession(env: OperationalRequest<{ moduleSerial: string; encryptedPasswordSecret: string; encryptedSessionKey: string }>): Promise<OperationalResponse> {
    const sessionId = randomBytes(16).toString('hex');
    const holder: { wrappedSessionKey?: Buffer } = {};
    return this.operate(env, openSession({
      sessionId, holder, heartbeatIntervalMs: this.heartbeatIntervalMs, timeoutMs: this.sessionTimeoutMs,
      encryptedPasswordSecret: Buffer.from(env.body.encryptedPasswordSecret, 'base64'), encryptedSessionKey: Buffer.from(env.body.encryptedSessionKey, 'base64'),
    }), {
      type: 'session', moduleSerial: env.body.moduleSerial, details: { sessionId },
      after: async (trx, at) => {
        await trx('sessions').insert({
          session_id: sessionId, meter_id: env.meterId, module_serial: env.body.moduleSerial, wrapped_session_key: holder.wrappedSessionKey,
          heartbeat_ms: this.heartbeatIntervalMs, timeout_ms: this.sessionTimeoutMs, opened_at: at, last_seen_at: new Date(this.now()), state: 'open',
        });
      },
    });
  }

  async closeSession(env: OperationalRequest<{ sessionId: string }>): Promise<OperationalResponse> {
    return this.operate(env, closeSession({ sessionId: env.body.sessionId }), {
      type: 'session', details: { sessionId: env.body.sessionId },
      before: async (trx) => {
        await this.liveSession(trx, env.body.sessionId, env.meterId, true);
      },
      after: async (trx) => {
        await trx('sessions').where({ session_id: env.body.sessionId }).update({ state: 'closed', end_reason: 'closed by the client' });
      },
    });
  }

  /**
   * Heartbeat: the dynamic password is verified with the HMK inside a module (no package
   * change); a bad one ends the session.
   */
  async heartbeat(req: { sessionId: string; meterId: string; counter: number; clientTime: number; dynamicPassword: string }): Promise<{ counter: number; expiresAt: string }> {
    const session = await this.liveSession(this.db, req.sessionId, req.meterId);
    this.checkCounter(session, req.counter, req.clientTime);
    const { hsm, pkg } = await this.readPackage(req.meterId);
    const ok = await hsm.verifyHmac({
      keyChain: hmkChain(pkg),
      data: dynamicPasswordInput({ meterId: req.meterId, sessionId: req.sessionId, counter: req.counter, clientTime: req.clientTime, purpose: 'heartbeat' }),
      mac: Buffer.from(req.dynamicPassword, 'base64'),
    });
    if (!ok) {
      await this.endSession(req.sessionId, 'bad dynamic password');
      throw vbiError('BAD_DYNAMIC_PASSWORD', 'heartbeat dynamic password does not verify; the session is ended');
    }
    const now = new Date(this.now());
    // counter only moves forward, even with concurrent heartbeats and prints
    const n = await this.db('sessions').where({ session_id: req.sessionId, state: 'open' }).where('counter', '<', req.counter)
      .update({ counter: req.counter, last_seen_at: now });
    if (n === 0) throw vbiError('STALE_CHALLENGE', 'heartbeat counter already used');
    return { counter: req.counter, expiresAt: new Date(now.getTime() + session.timeout_ms).toISOString() };
  }

  private async liveSession(db: Knex, sessionId: string, meterId: string, lock = false) {
    const q = db('sessions').where({ session_id: sessionId, meter_id: meterId });
    const s = await (lock ? q.forUpdate() : q).first();
    if (!s) throw vbiError('SESSION_NOT_FOUND', `no session ${sessionId} for meter ${meterId}`);
    if (s.state !== 'open') throw vbiError('SESSION_ENDED', `session ${sessionId} is ${s.state}: ${s.end_reason ?? ''}`);
    if (this.now() - s.last_seen_at.getTime() > s.timeout_ms) {
      // Inside a transaction that holds the row, the caller records the end after rolling back.
      if (!lock) await this.endSession(sessionId, 'missed heartbeat');
      throw vbiError('SESSION_ENDED', `session ${sessionId} missed its heartbeat`);
    }
    return s;
  }

  private checkCounter(session: { counter: number }, counter: number, clientTime: number): void {
    if (!Number.isSafeInteger(counter) || counter <= session.counter) throw vbiError('STALE_CHALLENGE', `counter ${counter} is not above ${session.counter}`);
    if (!Number.isSafeInteger(clientTime) || Math.abs(clientTime - this.now()) > CLOCK_SKEW_MS) throw vbiError('BAD_REQUEST', 'client clock is more than 5 minutes off');
  }

  private async endSession(sessionId: string, reason: string): Promise<void> {
    await this.db('sessions').where({ session_id: sessionId, state: 'open' }).update({ state: 'ended', end_reason: reason });
  }

  // --- 4. printing -------------------------------------------------------------------------------

  /**
   * A print batch: the envelope authorises it (one dispatch), then each item is printed in its
   * own dispatch and transaction while the session is live. Items after the session ends are
   * voided and not debited (docs/protocol.md section 4).
   */
  async print(env: OperationalRequest<{ sessionId: string; items: PrintItemRequest[] }>): Promise<{ authorization: OperationalResponse; items: PrintedItem[]; registers: { ascending: number; descending: number } }> {
    const { sessionId, items } = env.body;
    const mailpieces = items.map((it) => this.mailpiece(it));
    const authorization = await this.operate(env, async (pkg, ctx) => ({ ...(await inquiry(pkg, ctx)), result: { batchId: randomBytes(8).toString('hex'), items: items.length } }), {
      type: 'inquiry', details: { sessionId, items: items.length },
      before: async (trx) => {
        await this.liveSession(trx, sessionId, env.meterId, true);
      },
    });
    const results: PrintedItem[] = [];
    let registers = authorization.registers;
    let ended: string | undefined;
    for (let i = 0; i < items.length; i++) {
      if (ended) {
        results.push({ index: i, status: 'voided', reason: ended });
      } else {
        try {
          const r = await this.printItem(env.meterId, sessionId, items[i], mailpieces[i], 'postage');
          results.push({ index: i, status: 'printed', ...r });
          registers = { ascending: r.receipt.ascendingRegister, descending: r.receipt.descendingRegister };
        } catch (e) {
          if (!(e instanceof VbiError)) throw e;
          if (['SESSION_ENDED', 'SESSION_NOT_FOUND', 'BAD_DYNAMIC_PASSWORD'].includes(e.code)) {
            ended = e.code;
            await this.endSession(sessionId, e.code === 'SESSION_ENDED' ? 'missed heartbeat' : e.code);
            results.push({ index: i, status: 'voided', reason: e.code });
          } else {
            results.push({ index: i, status: 'failed', reason: e.code });
          }
        }
      }
      await this.opts.afterItem?.(i);
    }
    return { authorization, items: results, registers };
  }

  /** Correction indicium (WO 99/41690) inside a session, for the additional postage. */
  async correction(env: OperationalRequest<{ sessionId: string; originalIndiciumId: number; item: PrintItemRequest }>): Promise<{ authorization: OperationalResponse; item: PrintedItem }> {
    const { sessionId, originalIndiciumId, item } = env.body;
    const mailpiece = this.mailpiece(item);
    const authorization = await this.operate(env, async (pkg, ctx) => ({ ...(await inquiry(pkg, ctx)), result: { originalIndiciumId } }), {
      type: 'inquiry',
      before: async (trx) => {
        // everything the item can be refused for without the module, before the authorisation commits
        const session = await this.liveSession(trx, sessionId, env.meterId, true);
        this.checkCounter(session, item.counter, item.clientTime);
        const original = await trx('indicia').where({ indicium_id: originalIndiciumId, meter_id: env.meterId }).first('indicium_id');
        if (!original) throw vbiError('UNKNOWN_INDICIUM', `meter ${env.meterId} has no indicium ${originalIndiciumId}`);
      },
    });
    // The authorisation has committed (the client's next challenge is in it): a refusal of the
    // item itself is answered inside the 200, as for a print batch.
    try {
      const r = await this.printItem(env.meterId, sessionId, item, mailpiece, 'correction', originalIndiciumId);
      return { authorization, item: { index: 0, status: 'printed', ...r } };
    } catch (e) {
      if (!(e instanceof VbiError) || e.kind !== 'user') throw e;
      return { authorization, item: { index: 0, status: e.code === 'BAD_DYNAMIC_PASSWORD' ? 'voided' : 'failed', reason: e.code } };
    }
  }

  private mailpiece(it: PrintItemRequest): Mailpiece {
    assertMills(it.postage, 'postage', { allowZero: false });
    if (!it.rate) return { destinationZip: it.destinationZip, rateCategory: 'FIX', rateTableId: 0, rateTableVersion: 0, itemType: it.itemType, dateOfMailing: it.dateOfMailing };
    const q = computePostage({ ...it.rate, at: new Date(this.now()) });
    if (q.postage !== it.postage) throw vbiError('POSTAGE_MISMATCH', `rate table ${q.rateTableName} prices this piece at ${q.postage} mills, not ${it.postage}`, { postage: q.postage });
    return { destinationZip: it.destinationZip, rateCategory: q.rateCategory, rateTableId: q.rateTableId, rateTableVersion: q.rateTableVersion, itemType: it.itemType, dateOfMailing: it.dateOfMailing };
  }

  private async printItem(meterId: string, sessionId: string, it: PrintItemRequest, mailpiece: Mailpiece, kind: 'postage' | 'correction', corrects?: number): Promise<{ indiciumId: number; encryptedIndicium: string; receipt: Receipt }> {
    let session: { wrapped_session_key: Buffer; counter: number } | undefined;
    let indiciumId = 0;
    try {
      const out = await this.opts.ledger.run({
        meterId, type: kind === 'postage' ? 'indicium' : 'correction',
        before: async (trx) => {
          session = await this.liveSession(trx, sessionId, meterId, true);
          this.checkCounter(session as { counter: number }, it.counter, it.clientTime);
        },
        execute: async (pkg, ctx) => printSessionItem({
          sessionId, wrappedSessionKey: (session as { wrapped_session_key: Buffer }).wrapped_session_key, mailpiece,
          type: kind === 'postage' ? 'indicium' : 'correction',
          item: { counter: it.counter, clientTime: it.clientTime, destinationZip: it.destinationZip, postage: it.postage, dynamicPassword: Buffer.from(it.dynamicPassword, 'base64') },
        })(pkg, ctx),
        after: async (trx, o, at) => {
          await trx('sessions').where({ session_id: sessionId }).update({ counter: it.counter, last_seen_at: new Date(this.now()) });
          const [row] = await trx('indicia').insert({
            meter_id: meterId, sequence: o.result.sequence, kind, postage: it.postage, corrects: corrects ?? null,
            data: o.result.data, signature: o.result.signature, module_serial: o.record.moduleSerial, checkpoint_seq: o.record.seq, created_at: at,
          }).returning('indicium_id');
          indiciumId = row.indicium_id;
        },
        details: (o) => ({ sessionId, counter: it.counter, kind, sequence: o.result.sequence, indicium: o.result.indicium.toString('base64') }),
      });
      return { indiciumId, encryptedIndicium: out.result.encryptedIndicium.toString('base64'), receipt: out.result.receipt };
    } catch (e) {
      if (isVbiError(e, 'BAD_DYNAMIC_PASSWORD')) await this.endSession(sessionId, 'bad dynamic password');
      throw e;
    }
  }
}
