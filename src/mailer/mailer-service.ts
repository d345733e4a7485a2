import { createHash, randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { isVbiError, vbiError, VbiError } from '../errors';
import { Ledger } from '../ledger/ledger';
import { HsmModule } from '../hsm/hsm-module';
import { PsdPackage } from '../psd/psd-package';
import { assertMills } from '../ledger/amounts';
import { recordRefund } from '../ledger/refund-rows';
import { PoolMovement } from '../module/commands/master-psd';
import { payDueRefunds, payRefund } from './refund-payout';
import { rekey } from '../module/commands/rekey';
import { openPackage } from '../module/package-seal';
import { checkEnvelopeState, operational, ProtocolOperation } from '../module/commands/operational';
import { registerUserSecrets } from '../module/commands/registration';
import { closeSession, hmkChain, inquiry, openSession, purchase, refundOperation } from '../module/commands/mailer-operations';
import { SessionItem } from '../module/commands/print-item';
import { BatchItem, BatchItemResult, printBatch } from '../module/commands/print-batch';
import { storePrintBatch } from './print-batch-rows';
import { postageValueDownload } from '../module/commands/postage-value-download';
import { Mailpiece } from '../module/commands/create-indicium';
import { resync } from '../module/commands/resync';
import { redeliver, StoredIndicium } from '../module/commands/redeliver';
import { assembleIndicium } from '../indicium/layout';
import type { IdempotencyContext } from '../api/idempotency';
import type {
  CorrectionAnswer, CorrectionBody, HistoryBody, PrintAnswer, PrintBody, PrintItemAnswer, PrintItemBody, PurchaseBody, RedeliverBody, RefundBody,
  RekeyBody, SessionCloseBody, SessionOpenBody, SettleBody,
} from '../protocol/bodies';
import {
  MeterTransaction, OperationalRequest, OperationalResponse, Receipt, ResyncRequest, ResyncResponse, dynamicPasswordInput,
  registrationChallengeBytes, requestMacInput,
} from '../protocol/messages';
import { PaymentProvider } from '../payments/payment-provider';
import { assertChargeable, chargeWithRetry } from '../payments/charge';
import { computePostage } from '../rates/postage';
import { ModuleEntry, moduleDirectory } from './module-directory';
import type { LicenceOutcome, LicenceQueue } from '../licensing/licence-queue';

/** How long a mailer's HMK and password live from registration or re-key, unless configured: 2 years. */
export const DEFAULT_USER_SECRETS_LIFETIME_MS = 2 * 365 * 86_400_000;

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
    return moduleDirectory({ db: this.db, modules: this.opts.ledger.servingModules(), oaepHash: this.opts.oaepHash });
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

  /**
   * 1c: HMK and password secret into the package, meter active, first challenge. Once that
   * committed, the meter's licence request goes to the licensing authority (docs/licensing.md)
   * before the answer, which says where the licence stands: a meter prints only once licensed.
   */
  async complete(req: { meterId: string; moduleSerial: string; registrationToken: string; encryptedHmk: string; encryptedPasswordSecret: string }): Promise<{ challenge: string; hmkProof: string; registers: { ascending: number; descending: number }; licence: LicenceOutcome }> {
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
        // the licence request is due at the authority from now on (docs/licensing.md)
        await trx('license_requests').where({ request_id: requestId }).update({ completed_at: at, status: 'pending' });
      },
      execute: registerUserSecrets({
        encryptedHmk: Buffer.from(req.encryptedHmk, 'base64'), encryptedPasswordSecret: Buffer.from(req.encryptedPasswordSecret, 'base64'),
        userSecretsLifetimeMs: this.opts.userSecretsLifetimeMs ?? DEFAULT_USER_SECRETS_LIFETIME_MS,
      }),
      details: () => ({ moduleSerial: req.moduleSerial }),
    });
    // the registration is committed and answered whatever the authority does: a failure here
    // leaves the request pending for the licensing pass
    const licence: LicenceOutcome = this.opts.licensing
      ? await this.opts.licensing.process(requestId).catch((e) => {
        this.opts.log?.(`licence request ${requestId}: left for the next licensing pass: ${(e as Error).message}`);
        return { status: 'pending' as const };
      })
      : { status: 'pending' };
    return {
      challenge: out.result.challenge.toString('base64'), hmkProof: out.result.hmkProof.toString('base64'),
      registers: { ascending: out.package.ascendingRegister, descending: out.package.descendingRegister },
      licence,
    };
  }

  // --- 2. operational requests --------------------------------------------------------------

  /** One operational request: envelope checks and the operation in one module dispatch. */
  private async operate<R extends Record<string, unknown>>(env: OperationalRequest, op: ProtocolOperation<R>, extra: {
    type: string; moduleSerial?: string; details?: Record<string, unknown> | (() => Record<string, unknown>);
    before?: (trx: Knex.Transaction) => Promise<void>;
    /** Step.sideBySide: `before` only reads and locks, the operation touches only its meter. */
    sideBySide?: boolean;
    after?: (trx: Knex.Transaction, at: Date, record: { moduleSerial: string; seq: number }, response: OperationalResponse<R>) => Promise<void>;
    /** Step.pool: the master PSD's movement that goes with the operation (PVD, refunds). */
    pool?: () => PoolMovement | null;
  }): Promise<OperationalResponse<R>> {
    const out = await this.opts.ledger.run<OperationalResponse<R>>({
      meterId: env.meterId, moduleSerial: extra.moduleSerial, type: extra.type,
      execute: operational(env, op), before: extra.before, sideBySide: extra.sideBySide,
      after: extra.after ? (trx, o, at) => extra.after!(trx, at, o.record, o.result) : undefined,
      pool: extra.pool,
      details: () => ({ op: env.op, ...(typeof extra.details === 'function' ? extra.details() : extra.details) }),
      receipt: (o) => o.result.receipt,
    });
    return out.result;
  }

  balance(env: OperationalRequest): Promise<OperationalResponse> {
    return this.operate(env, inquiry, { type: 'inquiry' });
  }

  async history(env: OperationalRequest<HistoryBody>): Promise<OperationalResponse> {
    let entries: Array<Record<string, unknown>> = [];
    return this.operate(env, async (pkg, ctx) => ({ ...(await inquiry(pkg, ctx)), result: { entries } }), {
      type: 'inquiry',
      before: async (trx) => {
        const rows = await trx('journal').where({ meter_id: env.meterId }).orderBy('journal_id', 'desc').limit(env.body.limit ?? 50);
        entries = rows.map((r) => ({ time: r.created_at.toISOString(), type: r.tx_type, amount: r.amount, ascending: r.ascending_register, descending: r.descending_register }));
      },
    });
  }

  async refund(env: OperationalRequest<RefundBody>): Promise<OperationalResponse> {
    const { kind, reason } = env.body;
    const amount = kind === 'partial' ? assertMills(env.body.amount) : undefined;
    if (kind === 'full' && env.body.amount !== undefined) throw vbiError('BAD_REQUEST', 'a full refund takes no amount');
    let refunded = 0;
    let refundId = 0;
    const answer = await this.operate(env, async (pkg, ctx) => {
      const out = await refundOperation({ kind, amount, spoilageLimitBps: this.opts.spoilageLimitBps })(pkg, ctx);
      refunded = out.result.refunded as number;
      return out;
    }, {
      type: 'refund', details: { kind, reason },
      pool: () => ({ kind: kind === 'partial' ? 'payout' : 'return', amount: refunded, meterId: env.meterId }),
      after: async (trx, at, record) => {
        refundId = await recordRefund(trx, { meterId: env.meterId, kind, amount: refunded, reason, record, at });
      },
    });
    // paid back through the processor now; if that fails, by the next payout pass
    await payRefund(this.db, this.opts.payments, refundId).catch((e) => this.opts.log?.(`refund ${refundId}: payout failed, left for the next pass: ${(e as Error).message}`));
    return answer;
  }

  /** An operator's refund-and-close (Ledger.refundAndClose), then its payout to the mailer. */
  async refundAndClose(req: { meterId: string; operator: string; reason: string }): Promise<Record<string, unknown>> {
    const out = await this.opts.ledger.refundAndClose(req);
    const payout = await payRefund(this.db, this.opts.payments, out.refundId).catch(() => 'failed' as const);
    return { ...out, payout: payout === 'done' ? 'paid' : payout === 'failed' ? 'due' : payout };
  }

  /** The payout pass (src/mailer/refund-payout.ts): refunds still due are paid back through the processor. */
  payRefunds(): Promise<{ paid: number; unpaid: number; failed: number }> {
    return payDueRefunds(this.db, this.opts.payments);
  }

  // --- purchases ----------------------------------------------------------------------------

  /**
   * Purchase (PVD paid by the mailer): the payment is charged first (three attempts on a link
   * failure); a decline changes nothing; an approved payment becomes a PVD in the same dispatch
   * that answers the request; a check stays pending until `settle` finds it cleared.
   *
   * Behind an Idempotency-Key the payment carries the key, and the answer is kept on it in the
   * download's own transaction: a retry after a crash continues the same payment (charged again
   * under the same payment id, which the processor answers without a second charge), never a new
   * one, and is answered from the payment if the download committed (once its checkpoint is in
   * the ring).
   */
  async purchase(env: OperationalRequest<PurchaseBody>, idem?: IdempotencyContext): Promise<OperationalResponse> {
    const amount = assertChargeable(this.opts.payments, env.body.amount);
    const prior = idem ? await this.db('payments').where({ meter_id: env.meterId, idempotency_key: idem.key }).where('created_at', '>=', idem.since).orderBy('payment_id', 'desc').first() : undefined;
    let paymentId: number;
    let processorKey: string;
    if (prior) {
      paymentId = prior.payment_id;
      processorKey = processorKeyOf(prior);
      if (prior.status === 'applied') {
        if (!prior.answer) throw vbiError('BAD_REQUEST', `payment ${paymentId} is already applied`);
        const answer = prior.answer as OperationalResponse;
        await this.opts.ledger.ensureCheckpointed(answer.receipt.moduleSerial, answer.receipt.checkpointSeq);
        await this.capturePayment(paymentId);
        return answer;
      }
      if (prior.status === 'declined') throw vbiError('PAYMENT_DECLINED', `payment ${paymentId} was declined`);
      if (prior.status === 'voided') throw vbiError('BAD_REQUEST', `payment ${paymentId} was voided: its download was refused`);
      if (prior.provider_ref) return this.applyCharged(env, { paymentId, amount: prior.amount, providerRef: prior.provider_ref, status: prior.status }, idem);
    } else {
      // Nobody is charged for a message that would not pass the module's checks, nor for a
      // download the meter or the pool would refuse: the same download rules, run on the package
      // as it is now, and the pool row's copy of the master PSD's DR (the dispatch that follows
      // checks everything again, the pool on the sealed master PSD).
      const pkg = await this.preauthenticate(env);
      await postageValueDownload({ amount })(pkg);
      const pool = await this.db('pool').where({ pool_id: 1 }).first('available');
      if (!pool || pool.available < amount) throw vbiError('POOL_EXHAUSTED', `the pool cannot supply ${amount} mills now`);
      const [row] = await this.db('payments').insert({
        meter_id: env.meterId, amount, provider: this.opts.payments.name, status: 'pending', method_kind: env.body.payment.kind, idempotency_key: idem?.key ?? null,
      }).returning(['payment_id', 'processor_key']);
      paymentId = row.payment_id;
      processorKey = processorKeyOf(row);
    }
    let charge;
    try {
      charge = await chargeWithRetry(this.opts.payments, { paymentId: processorKey, amount, method: env.body.payment }, { attempts: 3, backoffMs: this.opts.paymentBackoffMs ?? 250 });
    } catch (e) {
      await this.db('payments').where({ payment_id: paymentId }).update({ status: 'declined', updated_at: this.db.fn.now() });
      throw e;
    }
    await this.db('payments').where({ payment_id: paymentId }).update({ provider_ref: charge.providerRef, status: charge.status, updated_at: this.db.fn.now() });
    return this.applyCharged(env, { paymentId, amount, providerRef: charge.providerRef, status: charge.status }, idem);
  }

  /**
   * Captures an applied payment at the processor (authorise, download, then capture). Best
   * effort: the download is in the meter either way, and a payment left uncaptured (a link failure,
   * a crash before this) is captured by the next capturePayments() pass. Returns whether it is captured.
   */
  async capturePayment(paymentId: number): Promise<boolean> {
    const p = await this.db('payments').where({ payment_id: paymentId, status: 'applied' }).first('provider_ref', 'amount', 'captured_at');
    if (!p || !p.provider_ref) return false;
    if (p.captured_at) return true;
    try {
      await this.opts.payments.capture(p.provider_ref, Number(p.amount));
    } catch (e) {
      this.opts.log?.(`payment ${paymentId}: capture failed, left for the next capture pass: ${(e as Error).message}`);
      return false;
    }
    await this.db('payments').where({ payment_id: paymentId }).whereNull('captured_at').update({ captured_at: this.db.fn.now() });
    return true;
  }

  /** The capture pass: every applied payment not yet captured (oldest first, at most `limit`). */
  async capturePayments(limit = 500): Promise<{ captured: number; failed: number }> {
    const rows = await this.db('payments').where({ status: 'applied' }).whereNull('captured_at').whereNotNull('provider_ref').orderBy('payment_id').limit(limit).select('payment_id');
    let captured = 0;
    for (const r of rows) if (await this.capturePayment(Number(r.payment_id))) captured++;
    return { captured, failed: rows.length - captured };
  }

  /** The download of a charged payment; a refusal voids the charge. */
  private async applyCharged(env: OperationalRequest, pay: { paymentId: number; amount: number; providerRef: string; status: 'approved' | 'pending' }, idem?: IdempotencyContext): Promise<OperationalResponse> {
    try {
      const answer = await this.applyPayment(env, { paymentId: pay.paymentId, amount: pay.amount, status: pay.status }, idem);
      if (pay.status === 'approved') await this.capturePayment(pay.paymentId);
      return answer;
    } catch (e) {
      // The download was refused (a concurrent request took the challenge or the funds): nothing
      // was stored, so the charge is voided at the processor and the payment recorded as voided.
      if (isVbiError(e) && e.kind === 'user') {
        await this.opts.payments.void(pay.providerRef);
        await this.db('payments').where({ payment_id: pay.paymentId }).update({ status: 'voided', updated_at: this.db.fn.now() });
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
    checkEnvelopeState(env, pkg, this.now());
    return pkg;
  }

  /**
   * A payment that is not yet in the meter: a pending check is polled, and once approved (or an
   * approved payment whose download failed, e.g. on a concurrent request) its value is downloaded.
   */
  async settle(env: OperationalRequest<SettleBody>): Promise<OperationalResponse> {
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
    const answer = await this.applyPayment(env, { paymentId: p.payment_id, amount: p.amount, status: polled.status });
    if (polled.status === 'approved') await this.capturePayment(p.payment_id);
    return answer;
  }

  private applyPayment(env: OperationalRequest, pay: { paymentId: number; amount: number; status: 'approved' | 'pending' }, idem?: IdempotencyContext): Promise<OperationalResponse> {
    return this.operate(env, purchase(pay), {
      type: pay.status === 'approved' ? 'pvd' : 'inquiry', details: { paymentId: pay.paymentId, amount: pay.amount, status: pay.status },
      before: async (trx) => {
        const p = await trx('payments').where({ payment_id: pay.paymentId }).forUpdate().first('status');
        if (p.status === 'applied') throw vbiError('BAD_REQUEST', `payment ${pay.paymentId} is already applied`);
      },
      pool: () => (pay.status === 'approved' ? { kind: 'download', amount: pay.amount, meterId: env.meterId } : null),
      after: async (trx, _at, record, response) => {
        if (pay.status !== 'approved') return;
        // the answer is kept with the download, for a retry after a crash (never released before the ring append)
        await trx('payments').where({ payment_id: pay.paymentId }).update({
          status: 'applied', applied_checkpoint_seq: record.seq, answer: idem ? JSON.stringify(response) : null, updated_at: trx.fn.now(),
        });
      },
    });
  }

  // --- recovery (docs/protocol.md 6) --------------------------------------------------------

  /**
   * The resync exchange: a client that lost its challenge or register copy proves the HMK over a
   * fresh nonce; one dispatch issues the next challenge and answers with the registers and the
   * meter's transactions after `afterSequence` (read in the same transaction), signed by the
   * module identity key.
   */
  async resync(req: ResyncRequest): Promise<ResyncResponse> {
    const limit = 200;
    let listed: { list: MeterTransaction[]; more: boolean } = { list: [], more: false };
    const out = await this.opts.ledger.run({
      meterId: req.meterId, type: 'inquiry',
      before: async (trx) => {
        const rows = await trx('journal as j')
          .where('j.meter_id', req.meterId).where('j.sequence', '>', req.afterSequence)
          .orderBy('j.sequence').limit(limit + 1)
          .select('j.sequence', 'j.tx_type', 'j.amount', 'j.ascending_register', 'j.descending_register', 'j.created_at', 'j.receipt', 'j.module_serial', 'j.checkpoint_seq');
        const shown = rows.slice(0, limit);
        // the indicia each record printed (a print request signs all its items in one record)
        const printed = shown.length === 0 ? [] : await trx('indicia').where({ meter_id: req.meterId })
          .whereIn(['module_serial', 'checkpoint_seq'], shown.map((r) => [r.module_serial, r.checkpoint_seq]))
          .orderBy('sequence').select('indicium_id', 'sequence', 'batch_id', 'item_index', 'module_serial', 'checkpoint_seq');
        const byRecord = new Map<string, NonNullable<MeterTransaction['indicia']>>();
        for (const i of printed) {
          const key = `${i.module_serial}#${i.checkpoint_seq}`;
          const list = byRecord.get(key) ?? [];
          list.push({ indiciumId: Number(i.indicium_id), sequence: Number(i.sequence), ...(i.batch_id !== null ? { batchId: i.batch_id as string, index: i.item_index as number } : {}) });
          byRecord.set(key, list);
        }
        listed = {
          more: rows.length > limit,
          list: shown.map((r) => {
            const indicia = byRecord.get(`${r.module_serial}#${r.checkpoint_seq}`);
            return {
              sequence: Number(r.sequence), type: r.tx_type, amount: Number(r.amount), ascending: Number(r.ascending_register), descending: Number(r.descending_register),
              time: r.created_at.toISOString(),
              ...(r.receipt ? { receipt: r.receipt as Receipt } : {}),
              ...(indicia ? { indicia } : {}),
            };
          }),
        };
      },
      execute: resync(req, () => listed),
      details: () => ({ op: 'resync', afterSequence: req.afterSequence }),
    });
    return out.result;
  }

  /**
   * `redeliver`: committed indicia of the meter sent again, encrypted to the session that asks
   * (the same bytes as printed; nothing debited or signed again). Exactly one selector: a batch,
   * the Idempotency-Key of a print or correction request, or a range of piece numbers (the
   * indicia's `sequence`, the number printed on the label).
   */
  async redeliver(env: OperationalRequest<RedeliverBody>): Promise<OperationalResponse> {
    const b = env.body;
    const selectors = [b.batchId !== undefined, b.idempotencyKey !== undefined, b.fromSequence !== undefined].filter(Boolean).length;
    if (selectors !== 1 || (b.fromSequence === undefined) !== (b.toSequence === undefined)) {
      throw vbiError('VALIDATION_FAILED', 'redeliver takes exactly one of batchId, idempotencyKey, or fromSequence with toSequence', { in: 'body', errors: [{ path: '', message: 'exactly one selector' }] });
    }
    if (b.fromSequence !== undefined && (b.toSequence! < b.fromSequence || b.toSequence! - b.fromSequence >= 500)) {
      throw vbiError('VALIDATION_FAILED', 'a sequence range holds 1 to 500 sequences', { in: 'body', errors: [{ path: '/toSequence', message: 'fromSequence <= toSequence < fromSequence + 500' }] });
    }
    let wrapped: Buffer = Buffer.alloc(0);
    let found: StoredIndicium[] = [];
    return this.operate(env, redeliver({ sessionId: b.sessionId, wrappedSessionKey: () => wrapped, indicia: () => found }), {
      type: 'inquiry', details: { redeliver: { batchId: b.batchId, idempotencyKey: b.idempotencyKey, fromSequence: b.fromSequence, toSequence: b.toSequence } },
      before: async (trx) => {
        const session = await this.liveSession(trx, b.sessionId, env.meterId, true);
        wrapped = session.wrapped_session_key;
        const q = trx('indicia as i').where('i.meter_id', env.meterId);
        if (b.batchId !== undefined) q.where('i.batch_id', b.batchId);
        else if (b.idempotencyKey !== undefined) {
          q.whereIn('i.batch_id', trx('print_batches').where({ meter_id: env.meterId, idempotency_key: b.idempotencyKey }).select('batch_id'));
        } else q.whereBetween('i.sequence', [b.fromSequence!, b.toSequence!]);
        const rows = await q.orderBy('i.sequence').limit(500)
          .select('i.indicium_id', 'i.sequence', 'i.kind', 'i.postage', 'i.batch_id', 'i.item_index', 'i.data', 'i.signature', 'i.receipt');
        found = rows.map((r) => ({
          indiciumId: Number(r.indicium_id), sequence: Number(r.sequence), kind: r.kind, postage: Number(r.postage), batchId: r.batch_id, index: r.item_index,
          indicium: assembleIndicium(r.data, r.signature), receipt: r.receipt,
        }));
      },
    });
  }

  // --- 3. sessions --------------------------------------------------------------------------

  async openSession(env: OperationalRequest<SessionOpenBody>): Promise<OperationalResponse> {
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

  /**
   * Re-key (docs/protocol.md 7): a new HMK and password for the meter, on the module whose
   * transport key the client encrypted them to; allowed after the user secrets expired.
   */
  async rekey(env: OperationalRequest<RekeyBody>): Promise<OperationalResponse> {
    return this.operate(env, rekey({
      encryptedPasswordSecret: Buffer.from(env.body.encryptedPasswordSecret, 'base64'),
      encryptedNewHmk: Buffer.from(env.body.encryptedNewHmk, 'base64'),
      encryptedNewPasswordSecret: Buffer.from(env.body.encryptedNewPasswordSecret, 'base64'),
      proofNonce: env.body.proofNonce,
      userSecretsLifetimeMs: this.opts.userSecretsLifetimeMs ?? DEFAULT_USER_SECRETS_LIFETIME_MS,
    }), { type: 'rekey', moduleSerial: env.body.moduleSerial });
  }

  async closeSession(env: OperationalRequest<SessionCloseBody>): Promise<OperationalResponse> {
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
   * A print batch in one module dispatch and one transaction (docs/protocol.md section 4): the
   * envelope, then every item while the session is live — dynamic password, counter, funds,
   * signature, encryption to the session key — and the package sealed once. Items after the
   * session ends are voided and not debited.
   *
   * Behind an Idempotency-Key a retry of a request whose run died or failed gets what it
   * committed from the database (the batch row and its indicia: the same bytes) once its
   * checkpoint is in the ring, or runs it if nothing committed.
   */
  async print(env: OperationalRequest<PrintBody>, idem?: IdempotencyContext): Promise<PrintAnswer> {
    const { sessionId, items } = env.body;
    const mailpieces = items.map((it) => this.mailpiece(it));
    return this.printRequest(env, 'print', idem, items.map((item, i) => ({ item, mailpiece: mailpieces[i] })), {
      details: { sessionId, items: items.length },
    });
  }

  /** Correction indicium (WO 99/41690) inside a session, for the additional postage: one item, the same way. */
  async correction(env: OperationalRequest<CorrectionBody>, idem?: IdempotencyContext): Promise<CorrectionAnswer> {
    const { sessionId, originalIndiciumId, item } = env.body;
    const mailpiece = this.mailpiece(item);
    const out = await this.printRequest(env, 'correction', idem, [{ item, mailpiece }], {
      result: { originalIndiciumId }, corrects: originalIndiciumId,
      before: async (trx, session) => {
        // refused before the authorisation commits: the request fails as a whole
        this.checkCounter(session, item.counter, item.clientTime);
        const original = await trx('indicia').where({ indicium_id: originalIndiciumId, meter_id: env.meterId }).first('indicium_id');
        if (!original) throw vbiError('UNKNOWN_INDICIUM', `meter ${env.meterId} has no indicium ${originalIndiciumId}`);
      },
      details: { sessionId, originalIndiciumId },
    });
    return { authorization: out.authorization, item: out.items[0] };
  }

  /**
   * The print and correction requests: the authorisation, every item and the batch row (with the
   * answer and the items refused or voided) in one dispatch and one transaction.
   */
  private async printRequest(env: OperationalRequest<{ sessionId: string }>, kind: 'print' | 'correction', idem: IdempotencyContext | undefined,
    requested: Array<{ item: PrintItemBody; mailpiece: Mailpiece }>,
    extra: {
      result?: Record<string, unknown>; corrects?: number; details: Record<string, unknown>; before?: (trx: Knex.Transaction, session: { counter: number }) => Promise<void>;
    },
  ): Promise<PrintAnswer> {
    const { sessionId } = env.body;
    const meterId = env.meterId;
    if (idem?.resumed) {
      // an earlier run of this request died or failed: if it committed, answer what it committed
      const prior = await this.db('print_batches').where({ meter_id: meterId, kind, idempotency_key: idem.key })
        .where('created_at', '>=', idem.since).orderBy('created_at', 'desc').first('batch_id', 'answer', 'outcomes', 'items');
      if (prior) return this.storedBatch(prior);
    }
    const batchId = randomBytes(8).toString('hex');
    const holder: { results?: BatchItemResult[] } = {};
    let session: { wrapped_session_key: Buffer; counter: number; last_seen_at: Date; timeout_ms: number } | undefined;
    let batchItems: BatchItem[] = [];
    let lastSeen = 0;
    const ids = new Map<number, number>();
    let answered: PrintItemAnswer[] = [];
    const run = printBatch({
      sessionId, type: kind === 'print' ? 'indicium' : 'correction', holder,
      wrappedSessionKey: () => session!.wrapped_session_key,
      items: () => batchItems,
      live: async (index: number) => {
        if (index > 0) await this.opts.afterItem?.(index - 1);
        // a missed heartbeat ends the session: the service counts each printed item as activity
        if (this.now() - lastSeen > session!.timeout_ms) return 'SESSION_ENDED';
        lastSeen = Math.max(lastSeen, this.now());
        return null;
      },
    });
    const authorization = await this.operate(env, async (pkg, ctx) => {
      // the module may run the request again (its place in the group changed): from the start
      lastSeen = session!.last_seen_at.getTime();
      return { ...(await run(pkg, ctx)), result: { batchId, items: requested.length, ...extra.result } };
    }, {
      type: 'inquiry', sideBySide: true,
      before: async (trx) => {
        const s = await this.liveSession(trx, sessionId, meterId, true);
        session = s;
        lastSeen = s.last_seen_at.getTime();
        await extra.before?.(trx, s);
        // counters rise strictly from the session's; the client clock within 5 minutes
        let counter = s.counter;
        batchItems = requested.map(({ item, mailpiece }) => {
          const it: SessionItem = { counter: item.counter, clientTime: item.clientTime, destinationZip: item.destinationZip, postage: item.postage, dynamicPassword: Buffer.from(item.dynamicPassword, 'base64') };
          try {
            this.checkCounter({ counter }, item.counter, item.clientTime);
          } catch (e) {
            return { item: it, mailpiece, refused: (e as VbiError).code };
          }
          counter = item.counter;
          return { item: it, mailpiece };
        });
      },
      after: async (trx, at, record, response) => {
        const results = holder.results ?? [];
        const printed = results.filter((r) => r.status === 'printed');
        const refused = Object.fromEntries(results.filter((r) => r.status !== 'printed').map((r) => [r.index, { status: r.status, reason: r.reason }]));
        const ended = results.find((r) => r.status === 'voided');
        ids.clear();
        for (const [index, id] of await storePrintBatch(trx, {
          batch: { batchId, meterId, kind, idempotencyKey: idem?.key ?? null, sessionId, items: requested.length, answer: response, outcomes: refused },
          printed: printed.map((r) => ({
            index: r.index, sequence: r.printed!.sequence, postage: r.printed!.postage, data: r.printed!.data, signature: r.printed!.signature,
            counter: batchItems[r.index].item.counter, encryptedIndicium: r.printed!.encryptedIndicium, receipt: r.printed!.receipt,
          })),
          indicium: { kind: kind === 'print' ? 'postage' : 'correction', corrects: extra.corrects ?? null, moduleSerial: record.moduleSerial, checkpointSeq: record.seq, at },
          session: {
            counter: printed.length ? Math.max(...printed.map((r) => batchItems[r.index].item.counter)) : null,
            lastSeenAt: new Date(this.now()),
            end: ended ? { reason: ended.reason === 'SESSION_ENDED' ? 'missed heartbeat' : ended.reason ?? null } : null,
          },
        })) ids.set(index, id);
        answered = results.map((r) => (r.printed
          ? { index: r.index, status: 'printed', indiciumId: ids.get(r.index), encryptedIndicium: r.printed.encryptedIndicium.toString('base64'), receipt: r.printed.receipt }
          : { index: r.index, status: r.status, reason: r.reason }));
      },
      details: () => ({
        batchId, ...extra.details,
        printed: (holder.results ?? []).filter((r) => r.printed).map((r) => ({
          index: r.index, counter: batchItems[r.index].item.counter, sequence: r.printed!.sequence, indicium: r.printed!.indicium.toString('base64'),
        })),
      }),
    });
    return { authorization, items: answered, registers: authorization.registers };
  }

  /**
   * A committed print or correction request answered again from the database: the same bytes,
   * and only once its checkpoint record is in the module's ring (never released before that).
   */
  private async storedBatch(prior: { batch_id: string; answer: OperationalResponse; outcomes: Record<string, { status: 'voided' | 'failed'; reason: string }>; items: number }): Promise<PrintAnswer> {
    await this.opts.ledger.ensureCheckpointed(prior.answer.receipt.moduleSerial, prior.answer.receipt.checkpointSeq);
    const done = new Map<number, PrintItemAnswer>();
    for (const [index, o] of Object.entries(prior.outcomes ?? {})) done.set(Number(index), { index: Number(index), status: o.status, reason: o.reason });
    const rows = await this.db('indicia').where({ batch_id: prior.batch_id }).select('indicium_id', 'item_index', 'encrypted_indicium', 'receipt');
    for (const r of rows) {
      done.set(r.item_index, { index: r.item_index, status: 'printed', indiciumId: Number(r.indicium_id), encryptedIndicium: r.encrypted_indicium.toString('base64'), receipt: r.receipt });
    }
    const items = Array.from({ length: prior.items }, (_, i) => done.get(i) ?? { index: i, status: 'voided' as const, reason: 'NOT_PRINTED' });
    return { authorization: prior.answer, items, registers: prior.answer.registers };
  }

  private mailpiece(it: PrintItemBody): Mailpiece {
    assertMills(it.postage, 'postage', { allowZero: false });
    if (!it.rate) return { destinationZip: it.destinationZip, rateCategory: 'FIX', rateTableId: 0, rateTableVersion: 0, itemType: it.itemType, dateOfMailing: it.dateOfMailing };
    const q = computePostage({ ...it.rate, at: new Date(this.now()) });
    if (q.postage !== it.postage) throw vbiError('POSTAGE_MISMATCH', `rate table ${q.rateTableName} prices this piece at ${q.postage} mills, not ${it.postage}`, { postage: q.postage });
    return { destinationZip: it.destinationZip, rateCategory: q.rateCategory, rateTableId: q.rateTableId, rateTableVersion: q.rateTableVersion, itemType: it.itemType, dateOfMailing: it.dateOfMailing };
  }
}

/**
 * The id a payment has at the processor, its idempotency key there: `<payment id>.<random>`
 * (sql/0220), so a payment id issued again after a restore of the database is a new payment at the
 * processor; a payment from before that column has its plain id.
 */
function processorKeyOf(row: { payment_id: number | string; processor_key: string | null }): string {
  return row.processor_key ? `${row.payment_id}.${row.processor_key}` : String(row.payment_id);
}
