import { randomBytes, randomUUID } from 'node:crypto';
import { isVbiError, vbiError } from '../errors';
import {
  Operation, OperationalRequest, OperationalResponse, passwordSecret, Receipt, RegisterEcho, rekeyProofInput, ResyncResponse,
} from '../protocol/messages';
import { decryptIndicium, encryptToModule, hmacSha256 } from './client-crypto';
import { ClientState, findModule, KnownModule, PendingRequest } from './client-state';
import { buildResyncRequest, checkResyncResponse } from './resync';
import { decodeIndicium, DecodedIndicium } from '../indicium/layout';
import { dynamicPassword } from './dynamic-password';
import { buildEnvelope, checkResponseMac, checkResponseReceipt } from './envelope';
import { FetchFn, HttpClient, HttpClientOptions, NetworkError } from './http';
import { KeyFile } from './key-file';
import { callsForMove } from './challenge-answer';
import { moveToAnotherModule } from './module-move';
import { checkModuleCertificate, ReceiptVerifier } from './module-trust';
import { buildPrintItem, PrintItemRequest } from './print-item';
import { checkPrintedItems, PrintedItem } from './print-results';
import { registerMeter, RegistrationRequest } from './registration';
import { ClientSession, endsSession, isEndingCode } from './session';
import { verifyIndiciumRemote } from './verify-remote';
import { CorrectionAnswer, Payment, PrintAnswer, PrintItemAnswer, redeliveryAad } from '../protocol/bodies';
import type {
  BalanceResult, HeartbeatAnswer, HistoryEntry, PurchaseResult, SessionOpened, VerifyAnswer, WireModule, WirePrintItem,
} from './wire';

/** Injectable dependencies (tests). */
export interface VbiClientOptions {
  fetch?: FetchFn;
  /** ms since epoch; default Date.now. */
  clock?: () => number;
  /** Retry and timeout settings of the HTTP layer. */
  http?: Omit<HttpClientOptions, 'baseUrl' | 'fetch'>;
  /**
   * Receives every request recover() finishes, also when another call recovers it first (a
   * print whose answer was lost: its indicia, the same bytes as printed).
   */
  onRecovered?: (r: RecoveredRequest) => void | Promise<void>;
}

/** A purchase, print or correction whose answer was lost, finished by recover(). */
export interface RecoveredRequest {
  op: PendingRequest['op'];
  idempotencyKey: string;
  /** purchase: the operational response. */
  response?: OperationalResponse;
  /** print, correction: the outcome as print() would have returned it. */
  outcome?: PrintOutcome;
  /** The service refused the request (nothing happened): its error code. */
  refused?: string;
}

/** A committed indicium fetched again (redeliver): the same bytes as printed. */
export interface RedeliveredIndicium {
  indiciumId: number;
  sequence: number;
  kind: 'postage' | 'correction';
  postage: number;
  batchId?: string;
  index?: number;
  indicium: Buffer;
  decoded: DecodedIndicium;
  receipt: Receipt;
}

/** Which committed indicia to fetch again: one print request's, by batch or key, or a range of piece numbers (the indicia's `sequence`). */
export type RedeliverySelector = { batchId: string } | { idempotencyKey: string } | { fromSequence: number; toSequence: number };

/**
 * Codes that mean the client's copy is not the module's and nothing happened: the challenge is
 * not the module's last (an answer was lost, the key file is older than the meter), or the
 * registers differ (a key file whose registers were lost or edited). The client resyncs —
 * adopting only registers the module signed and MACed for its nonce — and sends the request
 * again; if the resync itself fails, the original error is reported.
 */
const OUT_OF_STEP = ['STALE_CHALLENGE', 'REGISTER_MISMATCH'] as const;
const outOfStep = (e: unknown) => OUT_OF_STEP.some((c) => isVbiError(e, c));

/** A refund request (docs/protocol.md 2). */
export type RefundRequest = { kind: 'partial'; amount: number; reason: string } | { kind: 'full'; reason: string };

/** Progress of a print: called once per item, in order, after the batch's answer was checked and saved. */
export interface PrintProgress {
  done: number;
  total: number;
  item: PrintedItem;
}

/** The outcome of a print request. */
export interface PrintOutcome {
  batchId?: string;
  items: PrintedItem[];
  printed: number;
  /** Not printed, nothing debited: the session ended first. */
  voided: number;
  /** Refused by the service (reason), nothing debited. */
  failed: number;
  /** Debited but a client check failed: do not mail; ask for a refund. */
  unverified: number;
  /** The register copy after the batch (from the last signed receipt). */
  registers: RegisterEcho;
}

/**
 * The mailer's client for docs/protocol.md. Every operational call sends one envelope (last
 * challenge, register copy, body, HMAC with the HMK), checks the response HMAC, stores the new
 * challenge and registers in the key file, checks the module's signed receipt, and only then
 * returns. Calls are serialised: there is one challenge at a time.
 *
 * Why the state is saved between the MAC check and the receipt check: once the response MAC
 * verifies, the module has issued a new challenge and the old one is dead; keeping the old one
 * would lock the client out (STALE_CHALLENGE). A bad receipt is still reported as an error.
 */
export class VbiClient {
  private readonly http: HttpClient;
  private readonly clock: () => number;
  private hmk: Buffer;
  private receipts: ReceiptVerifier;
  private queue: Promise<unknown> = Promise.resolve();
  private current: ClientSession | undefined;
  /** The receipt of the last operational call. */
  lastReceipt: Receipt | undefined;

  /**
   * `pwSecret` = passwordSecret(password, meterId), kept instead of the password for
   * session-open; the key file is already decrypted.
   */
  private constructor(private readonly keyFile: KeyFile<ClientState>, http: HttpClient, clock: () => number, private pwSecret: Buffer,
    private readonly onRecovered?: VbiClientOptions['onRecovered']) {
    this.http = http;
    this.clock = clock;
    this.hmk = Buffer.from(keyFile.state.hmk, 'base64');
    this.receipts = new ReceiptVerifier(keyFile.state.modules);
  }

  /** Registers a new mailer (docs/protocol.md 1a-1c), writes the key file and returns an open client. */
  static async register(req: RegistrationRequest & VbiClientOptions): Promise<VbiClient> {
    const http = new HttpClient({ ...req.http, baseUrl: req.baseUrl, fetch: req.fetch });
    const clock = req.clock ?? Date.now;
    const file = await registerMeter(req, { http, clock });
    return new VbiClient(file, http, clock, passwordSecret(req.password, file.state.meterId), req.onRecovered);
  }

  /**
   * Opens the key file with the password (WRONG_PASSWORD) and returns a client for its meter.
   * `baseUrl` overrides the server saved at registration (not saved).
   */
  static async open(req: { keyFilePath: string; password: string; baseUrl?: string } & VbiClientOptions): Promise<VbiClient> {
    const file = await KeyFile.open<ClientState>({ path: req.keyFilePath, password: req.password });
    if (file.state.version !== 1) throw vbiError('BAD_REQUEST', `key file ${req.keyFilePath} has unsupported state version ${String(file.state.version)}`);
    if (file.state.status !== 'active') {
      throw vbiError('NOT_REGISTERED', `registration of meter ${file.state.meterId} did not complete (key file ${req.keyFilePath} is pending)`);
    }
    const http = new HttpClient({ ...req.http, baseUrl: req.baseUrl ?? file.state.serverUrl, fetch: req.fetch });
    return new VbiClient(file, http, req.clock ?? Date.now, passwordSecret(req.password, file.state.meterId), req.onRecovered);
  }

  /** The meter this client operates. */
  get meterId(): string {
    return this.keyFile.state.meterId;
  }

  /** The client's register copy (mills). */
  get registers(): RegisterEcho {
    return { ...this.keyFile.state.registers };
  }

  /** The saved state (read-only view: label defaults, modules, server URL). */
  get state(): Readonly<ClientState> {
    return this.keyFile.state;
  }

  /** The open session, if any. */
  get session(): ClientSession | undefined {
    return this.current;
  }

  /** `balance`: the meter's registers and state. */
  async balance(): Promise<BalanceResult> {
    return (await this.operate<BalanceResult>('balance', '/v1/balance', {}, { lostAnswer: 'repeat' })).result;
  }

  /** `history`: the newest `limit` (1..500) movements. */
  async history(limit = 50): Promise<HistoryEntry[]> {
    if (!Number.isInteger(limit) || limit < 1 || limit > 500) throw vbiError('BAD_REQUEST', 'limit must be 1..500', { field: 'limit' });
    return (await this.operate<{ entries: HistoryEntry[] }>('history', '/v1/history', { limit }, { lostAnswer: 'repeat' })).result.entries;
  }

  /**
   * `purchase`: a postage value download paid with `payment`. One Idempotency-Key per call
   * (or the caller's, to continue an earlier attempt): the request is saved before it is sent, a
   * network failure is retried with the same key and the same bytes, and a request whose answer
   * never came is finished by recover() — the payment is never taken twice.
   */
  async buy(req: { amount: number; payment: Payment; idempotencyKey?: string }): Promise<PurchaseResult & { receipt: Receipt }> {
    const r = await this.serial(async () => {
      await this.recoverPending();
      return this.sendPending<OperationalResponse<PurchaseResult>>('purchase', '/v1/purchases', { amount: req.amount, payment: req.payment }, req.idempotencyKey ?? randomUUID(), async (p, raw) => {
        const response = await this.accept<PurchaseResult>(raw, 'purchase');
        await this.dropPending(p);
        return response;
      });
    });
    return { ...r.result, receipt: r.receipt };
  }

  /** Settles a pending (check) purchase: a cleared check is downloaded now. */
  async settle(paymentId: number): Promise<PurchaseResult & { receipt: Receipt }> {
    if (!Number.isSafeInteger(paymentId) || paymentId < 1) throw vbiError('BAD_REQUEST', 'paymentId must be a positive integer', { field: 'paymentId' });
    const r = await this.operate<PurchaseResult>('purchase', `/v1/purchases/${paymentId}/settle`, { paymentId }, {
      // a lost answer: the download committed if the meter's journal shows a PVD for this payment's amount since
      lostAnswer: (rs) => rs.transactions.find((t) => t.type === 'pvd' && t.receipt?.op === 'purchase')?.receipt,
      result: (receipt) => ({ paymentId, status: 'approved', amount: receipt.amount }),
    });
    return { ...r.result, receipt: r.receipt };
  }

  /** `refund`: part of the descending register, or all of it. */
  async refund(req: RefundRequest): Promise<{ refunded: number; receipt: Receipt }> {
    const r = await this.operate<{ refunded: number }>('refund', '/v1/refunds', req, {
      lostAnswer: (rs) => rs.transactions.find((t) => t.receipt?.op === 'refund')?.receipt,
      result: (receipt) => ({ refunded: receipt.amount }),
    });
    return { ...r.result, receipt: r.receipt };
  }

  /**
   * `session-open`: proves the password (the password secret, RSA-OAEP to the module transport
   * key; WRONG_PASSWORD) and hands the module a fresh 32-byte session key the same way.
   * Heartbeats start at heartbeatIntervalMs unless `heartbeats: false`. A print whose answer was
   * lost is then recovered in the new session (onRecovered). When the service has no such module
   * or it is not available (UNKNOWN_MODULE, NO_MODULE), the client moves to another module that
   * proves itself (moveModule) and opens the session there, once.
   */
  async openSession(opts: { heartbeats?: boolean } = {}): Promise<ClientSession> {
    if (this.current && !this.current.ended) throw vbiError('BAD_REQUEST', `session ${this.current.sessionId} is already open`);
    const open = async () => {
      const s = this.keyFile.state;
      const module = this.ownModule(s);
      const sessionKey = randomBytes(32);
      // a lost answer leaves an unused session on the service, which times out: open another
      const r = await this.operate<SessionOpened>('session-open', '/v1/sessions', {
        moduleSerial: module.serial,
        encryptedPasswordSecret: encryptToModule(module, this.pwSecret),
        encryptedSessionKey: encryptToModule(module, sessionKey),
      }, { lostAnswer: 'repeat' });
      return { r, sessionKey };
    };
    let opened: Awaited<ReturnType<typeof open>>;
    try {
      opened = await open();
    } catch (e) {
      // refused before the module ran anything: move, then open with secrets for the new module
      if (!callsForMove(e) || !(await this.serial(() => this.moveNow()))) throw e;
      opened = await open();
    }
    const { r, sessionKey } = opened;
    const { sessionId, heartbeatIntervalMs, timeoutMs } = r.result;
    const session = new ClientSession({
      sessionId, sessionKey, heartbeatIntervalMs, timeoutMs,
      beat: async (counter) => {
        await this.sendHeartbeat(sessionId, counter);
      },
    });
    this.current = session;
    if (opts.heartbeats !== false) session.startHeartbeats();
    if (this.keyFile.state.pending?.length) {
      await session.exclusive(() => this.serial(() => this.recoverPending())).catch(() => undefined);
    }
    return session;
  }

  /** Sends one heartbeat now (the timer does this every heartbeatIntervalMs). */
  async heartbeat(): Promise<void> {
    await this.requireSession().heartbeat();
  }

  /** Stops the heartbeat timer (tests; the session then times out on the service). */
  stopHeartbeats(): void {
    this.current?.stopHeartbeats();
  }

  /** `session-close`; a session the service already ended counts as closed. */
  async closeSession(): Promise<void> {
    const session = this.current;
    if (!session) return;
    session.stopHeartbeats();
    try {
      if (!session.ended) {
        await session.exclusive(() => this.operate('session-close', `/v1/sessions/${encodeURIComponent(session.sessionId)}/close`, { sessionId: session.sessionId }, { lostAnswer: 'repeat' }));
      }
    } catch (e) {
      if (!endsSession(e)) throw e;
    } finally {
      session.end(new Error('session closed'));
      if (this.current === session) this.current = undefined;
    }
  }

  /**
   * `print`: one authorisation envelope for the batch (1..500 items), each item with its own
   * counter and dynamic password; priced locally when it has a `rate`. The answer's items are
   * decrypted with the session key and checked (./print-results.ts); the register copy is saved;
   * then `onProgress` runs once per item. The request is saved before it is sent: if its answer
   * never comes, recover() (or the next call) fetches it with the same Idempotency-Key.
   */
  async print(items: PrintItemRequest[], opts: { onProgress?: (p: PrintProgress) => void | Promise<void>; idempotencyKey?: string } = {}): Promise<PrintOutcome> {
    if (items.length < 1 || items.length > 500) throw vbiError('BAD_REQUEST', 'a print batch has 1 to 500 items', { field: 'items' });
    const session = this.requireSession();
    const outcome = await session.exclusive(() => this.serial(async () => {
      await this.recoverPending();
      const clientTime = this.clock();
      const wire = items.map((item) => buildPrintItem({
        meterId: this.meterId, sessionId: session.sessionId, counter: session.nextCounter(), clientTime, hmk: this.hmk, item,
      }));
      return this.sessionCall(session, () => this.sendPending('print', '/v1/indicia', { sessionId: session.sessionId, items: wire }, opts.idempotencyKey ?? randomUUID(),
        (p, raw) => this.finishBatch(p, raw), items));
    }));
    return this.report(outcome, opts.onProgress);
  }

  /**
   * `correction` (WO 99/41690): a correction indicium for the additional postage of indicium
   * `originalIndiciumId`, printed in the open session like one print item.
   */
  async correction(req: { originalIndiciumId: number; item: PrintItemRequest; idempotencyKey?: string }): Promise<PrintedItem> {
    const session = this.requireSession();
    const outcome = await session.exclusive(() => this.serial(async () => {
      await this.recoverPending();
      const wire = buildPrintItem({ meterId: this.meterId, sessionId: session.sessionId, counter: session.nextCounter(), clientTime: this.clock(), hmk: this.hmk, item: req.item });
      const body = { sessionId: session.sessionId, originalIndiciumId: req.originalIndiciumId, item: wire };
      return this.sessionCall(session, () => this.sendPending('correction', '/v1/corrections', body, req.idempotencyKey ?? randomUUID(),
        (p, raw) => this.finishBatch(p, raw), [req.item]));
    }));
    return outcome.items[0];
  }

  /**
   * The resync exchange (docs/protocol.md 6): the module's next challenge, the registers and the
   * meter's transactions after the newest receipt this client saw, checked (HMAC with the HMK,
   * signature of a verified module) and saved. The client does this by itself whenever the
   * service says its challenge or registers are not the module's, or an answer was lost.
   */
  resync(): Promise<ResyncResponse> {
    return this.serial(() => this.resyncNow());
  }

  /**
   * Finishes every purchase, print or correction whose answer was lost (the client crashed, the
   * network or the service failed): each is sent again with its Idempotency-Key and the same
   * bytes, so the service answers it from what committed — never a second payment, debit or
   * signature. Indicia of a print from an earlier session are fetched again in the open session
   * (redeliver); without an open session such a print stays pending (SESSION_NOT_FOUND).
   */
  recover(): Promise<RecoveredRequest[]> {
    return this.serial(async () => {
      if (this.keyFile.state.pendingRekey) await this.settleRekey();
      return this.recoverPending();
    });
  }

  /**
   * `rekey` (docs/protocol.md 7): a fresh HMK and, with `newPassword`, a new password, sent to the
   * client's module under the current HMK with proof of the current password. The new secrets
   * are saved in the key file before they are sent; once the module has proved the new HMK, the
   * key file holds only them (under the new password). A lost answer is settled by resync: the
   * key the module answers to is the one it holds. The only operation allowed once the user
   * secrets expired (USER_SECRETS_EXPIRED). Returns the new expiry. When the service has no such
   * module or it is not available (UNKNOWN_MODULE, NO_MODULE: refused, nothing committed, the
   * pending secrets already dropped), the client moves to another module that proves itself
   * (moveModule) and sends a fresh re-key, encrypted to that module, once.
   */
  rekey(req: { newPassword?: string } = {}): Promise<{ userSecretsExpiry: string }> {
    return this.serial(async () => {
      if (this.keyFile.state.pendingRekey) await this.settleRekey();
      try {
        return await this.rekeyNow(req);
      } catch (e) {
        // only a refusal whose pending secrets were dropped: an unsettled re-key never moves
        if (!callsForMove(e) || this.keyFile.state.pendingRekey || !(await this.moveNow())) throw e;
        return this.rekeyNow(req);
      }
    });
  }

  /** One re-key to the key file's module (see rekey), inside the queue, with nothing pending. */
  private async rekeyNow(req: { newPassword?: string }): Promise<{ userSecretsExpiry: string }> {
    const s = this.keyFile.state;
    const module = this.ownModule(s);
    const newHmk = randomBytes(32);
    const newPw = req.newPassword === undefined ? this.pwSecret : passwordSecret(req.newPassword, s.meterId);
    const proofNonce = randomBytes(32).toString('base64');
    await this.keyFile.save({
      ...s, pendingRekey: { hmk: newHmk.toString('base64'), passwordSecret: newPw.toString('base64'), ...(req.newPassword === undefined ? {} : { newPassword: req.newPassword }) },
    });
    const body = {
      moduleSerial: module.serial, encryptedPasswordSecret: encryptToModule(module, this.pwSecret),
      encryptedNewHmk: encryptToModule(module, newHmk), encryptedNewPasswordSecret: encryptToModule(module, newPw), proofNonce,
    };
    let r: OperationalResponse<{ newHmkProof: string; userSecretsExpiry: string }>;
    try {
      type Rekeyed = { newHmkProof: string; userSecretsExpiry: string };
      r = await this.accept<Rekeyed>(await this.send('rekey', '/v1/rekey', body), 'rekey').catch(async (e) => {
        if (!outOfStep(e)) throw e;
        // the module moved on (another device of this meter): in step again, then once more
        await this.resyncNow().catch(() => Promise.reject(e));
        return this.accept<Rekeyed>(await this.send('rekey', '/v1/rekey', body), 'rekey');
      });
    } catch (e) {
      if (e instanceof NetworkError) {
        if (await this.settleRekey()) return { userSecretsExpiry: 'unknown (the answer was lost; the new secrets are in use)' };
        throw e;
      }
      // refused: the module kept the old secrets
      const { pendingRekey: _dropped, ...rest } = this.keyFile.state;
      await this.keyFile.save(rest);
      throw e;
    }
    const proof = Buffer.from(String(r.result?.newHmkProof ?? ''), 'base64');
    if (!hmacSha256(newHmk, rekeyProofInput(s.meterId, proofNonce)).equals(proof)) {
      throw vbiError('BAD_MAC', 'the module did not prove the new HMK: the key file keeps both until recover() settles it');
    }
    await this.adoptRekey();
    return { userSecretsExpiry: r.result.userSecretsExpiry };
  }

  /**
   * A re-key whose outcome is unknown, settled by resync. First with the old HMK: if the module
   * answers to it, the re-key did not commit — and since that resync issued a new challenge, a
   * re-key still on its way can no longer commit (STALE_CHALLENGE) — so the pending secrets are
   * dropped. If the module refuses the old HMK (BAD_MAC), the re-key committed: resync with the
   * new one and adopt it. Returns whether the new secrets are in use.
   */
  private async settleRekey(): Promise<boolean> {
    const pending = this.keyFile.state.pendingRekey;
    if (!pending) return false;
    try {
      await this.resyncNow();
      const { pendingRekey: _dropped, ...rest } = this.keyFile.state;
      await this.keyFile.save(rest);
      return false;
    } catch (e) {
      if (!isVbiError(e, 'BAD_MAC')) throw e; // the link again: still unknown, still pending
    }
    const old = this.hmk;
    this.hmk = Buffer.from(pending.hmk, 'base64');
    try {
      await this.resyncNow();
    } catch (e) {
      this.hmk = old;
      throw e;
    }
    await this.adoptRekey();
    return true;
  }

  /** The pending secrets become the key file's own (under the new password, if one was chosen). */
  private async adoptRekey(): Promise<void> {
    const { pendingRekey: pending, ...rest } = this.keyFile.state;
    if (!pending) return;
    this.hmk = Buffer.from(pending.hmk, 'base64');
    this.pwSecret = Buffer.from(pending.passwordSecret, 'base64');
    const state: ClientState = { ...rest, hmk: pending.hmk };
    if (pending.newPassword !== undefined) await this.keyFile.saveUnderPassword(pending.newPassword, state);
    else await this.keyFile.save(state);
  }

  /**
   * `redeliver`: committed indicia fetched again, encrypted to the open session: the same bytes
   * as printed (checked against their signed receipts), never a new signature or a second debit.
   */
  redeliver(selector: RedeliverySelector): Promise<RedeliveredIndicium[]> {
    const session = this.requireSession();
    return session.exclusive(() => this.serial(() => this.redeliverNow(selector)));
  }

  /**
   * Moves the client to another module of the service (./module-move.ts): the first module
   * `GET /v1/modules` lists besides the key file's proves itself as in registration step 1b
   * (CERT_INVALID otherwise, and the key file is not changed); the key file then names it and
   * holds its proven transport key. Session-open and re-key do this by themselves after
   * UNKNOWN_MODULE or NO_MODULE. NO_MODULE when no other module is listed. Returns the new serial.
   */
  moveModule(): Promise<string> {
    return this.serial(async () => {
      const from = this.keyFile.state.moduleSerial;
      const moved = await this.moveNow();
      if (!moved) throw vbiError('NO_MODULE', `no module other than ${from} is available`);
      return moved;
    });
  }

  /**
   * Learns modules added since registration (GET /v1/modules): each identity certificate is
   * checked against the root saved at registration (CERT_INVALID otherwise) before its key is
   * trusted for receipts. Transport keys of these modules are not used: only a module that
   * proved itself (registration step 1b, or moveModule) receives secrets.
   */
  async refreshModules(): Promise<string[]> {
    const s = this.keyFile.state;
    const { modules } = await this.http.get<{ modules: WireModule[] }>('/v1/modules');
    const added: KnownModule[] = [];
    for (const m of Array.isArray(modules) ? modules : []) {
      if (findModule(s, m.serial)) continue;
      checkModuleCertificate({ rootCertPem: s.rootCertPem, moduleSerial: m.serial, certificateChain: m.certificateChain, at: new Date(this.clock()) });
      added.push({ serial: m.serial, transportKey: m.transportKey, oaepHash: m.oaepHash, certificateChain: m.certificateChain });
    }
    if (added.length) {
      await this.keyFile.save({ ...this.keyFile.state, modules: [...this.keyFile.state.modules, ...added] });
      this.receipts = new ReceiptVerifier(this.keyFile.state.modules);
    }
    return added.map((m) => m.serial);
  }

  /** POST /v1/verify: the service's verdict on an indicium. */
  verify(indicium: Buffer): Promise<VerifyAnswer> {
    return verifyIndiciumRemote(this.http, indicium);
  }

  /** Closes the session if one is open. */
  async close(): Promise<void> {
    await this.closeSession();
  }

  // --- internals -------------------------------------------------------------------------

  /** The module the key file names, with the transport key it proved. */
  private ownModule(s: ClientState): KnownModule {
    const module = findModule(s, s.moduleSerial);
    if (!module) throw vbiError('CERT_INVALID', `key file names module ${s.moduleSerial} but holds no verified key for it`);
    return module;
  }

  /** moveModule inside the queue: the new serial, or undefined when no other module is listed. */
  private async moveNow(): Promise<string | undefined> {
    const moved = await moveToAnotherModule({ http: this.http, keyFile: this.keyFile, at: new Date(this.clock()) });
    if (moved) this.receipts = new ReceiptVerifier(this.keyFile.state.modules);
    return moved;
  }

  private requireSession(): ClientSession {
    const s = this.current;
    if (!s) throw vbiError('SESSION_NOT_FOUND', 'no session is open (openSession first)');
    if (s.ended) throw vbiError('SESSION_ENDED', `session ${s.sessionId} is over: ${s.ended.message}`);
    return s;
  }

  private async sessionCall<T>(session: ClientSession, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (endsSession(e)) session.end(e as Error);
      throw e;
    }
  }

  private async sendHeartbeat(sessionId: string, counter: number): Promise<HeartbeatAnswer> {
    const clientTime = this.clock();
    return this.http.post<HeartbeatAnswer>(`/v1/sessions/${encodeURIComponent(sessionId)}/heartbeat`, {
      meterId: this.meterId, counter, clientTime,
      dynamicPassword: dynamicPassword(this.hmk, { meterId: this.meterId, sessionId, counter, clientTime, purpose: 'heartbeat' }),
    });
  }

  /**
   * One operational call: envelope, send, accept; serialised. When the service says the
   * client's challenge or registers are stale, the client resyncs and sends it once more. When
   * the answer is lost (network failure), the client resyncs and either sends it again
   * (`lostAnswer: 'repeat'`: reads, and requests whose repetition is harmless) or finds its
   * signed receipt among the transactions since (`lostAnswer(resync)`), else sends it again.
   */
  private operate<R>(op: Operation, path: string, body: unknown, recovery: {
    lostAnswer?: 'repeat' | ((rs: ResyncResponse) => Receipt | undefined);
    result?: (receipt: Receipt) => R;
  } = {}): Promise<OperationalResponse<R>> {
    return this.serial(async () => {
      await this.recoverPending();
      return this.operateNow<R>(op, path, body, recovery);
    });
  }

  private async operateNow<R>(op: Operation, path: string, body: unknown, recovery: {
    lostAnswer?: 'repeat' | ((rs: ResyncResponse) => Receipt | undefined);
    result?: (receipt: Receipt) => R;
  } = {}): Promise<OperationalResponse<R>> {
    const seen = this.keyFile.state.lastSequence ?? 0;
    try {
      return await this.accept<R>(await this.send(op, path, body), op);
    } catch (e) {
      if (outOfStep(e)) {
        await this.resyncNow().catch(() => Promise.reject(e));
        return this.accept<R>(await this.send(op, path, body), op);
      }
      if (!(e instanceof NetworkError) || !recovery.lostAnswer) throw e;
      const rs = await this.resyncNow(seen);
      if (recovery.lostAnswer !== 'repeat' && recovery.result) {
        const receipt = recovery.lostAnswer(rs);
        if (receipt && (await this.receiptsFor([{ receipt }])).verify(receipt)) {
          // it committed: its signed receipt is the answer (the registers are the resync's)
          this.lastReceipt = receipt;
          return {
            meterId: this.meterId, op, challenge: rs.challenge, registers: rs.registers, result: recovery.result(receipt), receipt, mac: '',
          };
        }
      }
      return this.accept<R>(await this.send(op, path, body), op);
    }
  }

  private send(op: Operation, path: string, body: unknown, idempotencyKey?: string): Promise<unknown> {
    return this.http.post<unknown>(path, this.envelope(op, body), { idempotencyKey });
  }

  private envelope(op: Operation, body: unknown): OperationalRequest {
    const s = this.keyFile.state;
    return buildEnvelope({ meterId: s.meterId, op, challenge: s.challenge, registers: s.registers, body, hmk: this.hmk }) as OperationalRequest;
  }

  /**
   * A request that moves money or prints value: saved in the key file with its key and bytes,
   * then sent; `finish` handles the answer and drops it. A stale challenge (nothing happened)
   * resyncs and sends it once more under a new key. A network failure leaves it pending.
   */
  private async sendPending<T>(op: PendingRequest['op'], path: string, body: unknown, idempotencyKey: string,
    finish: (p: PendingRequest, raw: unknown) => Promise<T>, requests?: PrintItemRequest[]): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const p: PendingRequest = { op, path, idempotencyKey: attempt === 0 ? idempotencyKey : randomUUID(), envelope: this.envelope(op, body), requests, sentAt: this.clock() };
      await this.keyFile.save({ ...this.keyFile.state, pending: [...(this.keyFile.state.pending ?? []), p] });
      let raw: unknown;
      try {
        raw = await this.http.post<unknown>(p.path, p.envelope, { idempotencyKey: p.idempotencyKey });
      } catch (e) {
        // the answer is lost, or the service failed part way: recover() finishes it
        if (!isVbiError(e) || e.kind !== 'user') throw e;
        await this.dropPending(p); // refused: nothing happened
        if (outOfStep(e) && attempt === 0) {
          await this.resyncNow().catch(() => Promise.reject(e));
          continue;
        }
        throw e;
      }
      return finish(p, raw);
    }
  }

  private async dropPending(p: PendingRequest): Promise<void> {
    const left = (this.keyFile.state.pending ?? []).filter((x) => x.idempotencyKey !== p.idempotencyKey);
    await this.keyFile.save({ ...this.keyFile.state, pending: left });
  }

  /** The answer of a print or correction, checked; indicia of another session are fetched again. */
  private async finishBatch(p: PendingRequest, raw: unknown): Promise<{ batchId?: string; items: PrintedItem[]; registers: RegisterEcho }> {
    const answer = raw as PrintAnswer & CorrectionAnswer;
    const body = p.envelope.body as { sessionId: string; items?: WirePrintItem[]; item?: WirePrintItem };
    const wire = body.items ?? (body.item ? [body.item] : []);
    const answered = p.op === 'print' ? (Array.isArray(answer?.items) ? answer.items : []) : (answer?.item ? [{ ...answer.item, index: 0 }] : []);
    const session = this.current;
    const sameSession = !!session && session.sessionId === body.sessionId;
    const anyPrinted = answered.some((a) => a?.status === 'printed');
    if (!sameSession && anyPrinted && (!session || session.ended)) {
      throw vbiError('SESSION_NOT_FOUND', `print request ${p.idempotencyKey} was answered in session ${body.sessionId}; open a session to receive its indicia again`);
    }
    const auth = await this.accept<{ batchId?: string }>(answer?.authorization, p.op);
    let decrypt: ((a: PrintItemAnswer) => Buffer) | undefined;
    if (!sameSession && anyPrinted) {
      const again = await this.redeliverNow({ idempotencyKey: p.idempotencyKey });
      const byId = new Map(again.map((x) => [x.indiciumId, x.indicium]));
      decrypt = (a) => {
        const bytes = byId.get(a.indiciumId as number);
        if (!bytes) throw vbiError('INDICIUM_MALFORMED', `indicium ${String(a.indiciumId)} was not delivered again`);
        return bytes;
      };
    }
    const checked = checkPrintedItems({
      meterId: this.meterId, op: p.op === 'correction' ? 'correction' : 'print', sessionId: body.sessionId, sessionKey: sameSession ? session!.sessionKey : Buffer.alloc(32),
      // the items come first in the request's one dispatch, from the registers the envelope carried
      // (the module checked them); the authorisation's receipt follows them
      requests: p.requests ?? [], items: wire, answered, startRegisters: p.envelope.registers,
      receipts: await this.receiptsFor(answered), decrypt,
    });
    const newest = Math.max(0, ...checked.items.map((i) => i.receipt?.sequence ?? 0));
    const state = this.keyFile.state;
    const fresher = newest >= (state.lastSequence ?? 0);
    await this.keyFile.save({
      ...state, ...(fresher ? { registers: checked.registers, lastSequence: newest } : {}),
      pending: (state.pending ?? []).filter((x) => x.idempotencyKey !== p.idempotencyKey),
    });
    const ended = checked.items.find((i) => i.status === 'voided' && isEndingCode(i.reason));
    if (ended && sameSession) session!.end(vbiError(ended.reason as 'SESSION_ENDED', `session ${body.sessionId} ended during the batch (item ${ended.index})`));
    return { batchId: auth.result?.batchId, ...checked };
  }

  /**
   * recover() inside the queue: see there. Requests the service refuses are dropped (nothing
   * happened). A print or correction of another session waits while no session is open (its
   * indicia could not be received); everything else is finished before the caller's request.
   */
  private async recoverPending(): Promise<RecoveredRequest[]> {
    const done: RecoveredRequest[] = [];
    for (const p of [...(this.keyFile.state.pending ?? [])]) {
      const sessionId = (p.envelope.body as { sessionId?: string }).sessionId;
      const open = this.current && !this.current.ended ? this.current : undefined;
      if (p.op !== 'purchase' && !open && sessionId !== this.current?.sessionId) continue;
      let raw: unknown;
      try {
        raw = await this.http.post<unknown>(p.path, p.envelope, { idempotencyKey: p.idempotencyKey });
      } catch (e) {
        if (!isVbiError(e) || e.kind !== 'user' || e.code === 'IDEMPOTENCY_IN_PROGRESS') throw e;
        await this.dropPending(p);
        const r: RecoveredRequest = { op: p.op, idempotencyKey: p.idempotencyKey, refused: (e as { code?: string }).code ?? 'ERROR' };
        done.push(r);
        await this.onRecovered?.(r);
        continue;
      }
      let r: RecoveredRequest;
      if (p.op === 'purchase') {
        const response = await this.accept<Record<string, unknown>>(raw, 'purchase');
        await this.dropPending(p);
        r = { op: p.op, idempotencyKey: p.idempotencyKey, response };
      } else {
        const outcome = await this.finishBatch(p, raw);
        r = { op: p.op, idempotencyKey: p.idempotencyKey, outcome: await this.report(outcome) };
      }
      done.push(r);
      await this.onRecovered?.(r);
    }
    return done;
  }

  private async resyncNow(afterSequence = this.keyFile.state.lastSequence ?? 0): Promise<ResyncResponse> {
    const request = buildResyncRequest({ meterId: this.meterId, hmk: this.hmk, afterSequence, clientTime: this.clock() });
    const raw = await this.http.post<unknown>('/v1/resync', request, { safeToRepeat: true });
    const serial = (raw as { moduleSerial?: unknown } | null)?.moduleSerial;
    if (typeof serial === 'string' && !findModule(this.keyFile.state, serial)) await this.refreshModules().catch(() => undefined);
    const r = checkResyncResponse({ response: raw, request, hmk: this.hmk, modules: this.keyFile.state.modules });
    await this.keyFile.save({ ...this.keyFile.state, challenge: r.challenge, registers: { ...r.registers }, lastSequence: r.sequence });
    return r;
  }

  private async redeliverNow(selector: RedeliverySelector): Promise<RedeliveredIndicium[]> {
    const session = this.requireSession();
    const r = await this.operateNow<{ items: Array<Omit<RedeliveredIndicium, 'indicium' | 'decoded'> & { encryptedIndicium: string }> }>(
      'redeliver', '/v1/indicia/redeliver', { sessionId: session.sessionId, ...selector }, { lostAnswer: 'repeat' });
    const items = Array.isArray(r.result?.items) ? r.result.items : [];
    const receipts = await this.receiptsFor(items);
    return items.map((x) => {
      const receipt = x.receipt;
      if (!receipt || receipt.meterId !== this.meterId || !receipts.verify(receipt)) {
        throw vbiError('CERT_INVALID', `redelivered indicium ${x.indiciumId}: its receipt is not signed by a module of this meter`);
      }
      const indicium = decryptIndicium({
        sessionKey: session.sessionKey, sessionId: session.sessionId, counter: 0, encryptedIndicium: x.encryptedIndicium, aad: redeliveryAad(session.sessionId, x.indiciumId),
      });
      const decoded = decodeIndicium(indicium);
      const f = decoded.fields;
      if (f.meterId !== this.meterId || f.postage !== receipt.amount || f.ascendingRegister !== receipt.ascendingRegister || f.descendingRegister !== receipt.descendingRegister) {
        throw vbiError('INDICIUM_FIELD_INVALID', `redelivered indicium ${x.indiciumId} does not match its signed receipt`);
      }
      return { indiciumId: x.indiciumId, sequence: x.sequence, kind: x.kind, postage: x.postage, batchId: x.batchId, index: x.index, indicium, decoded, receipt };
    });
  }

  /**
   * MAC check, save challenge and registers, receipt check (see the class comment for the
   * order). An answer older than the newest receipt the client saw (a replay fetched late) does
   * not move the saved challenge and registers back.
   */
  private async accept<R>(raw: unknown, op: Operation): Promise<OperationalResponse<R>> {
    const response = checkResponseMac<R>({ response: raw, meterId: this.meterId, op, hmk: this.hmk });
    const state = this.keyFile.state;
    const sequence = Number.isSafeInteger(response.receipt?.sequence) ? response.receipt.sequence : 0;
    if (sequence >= (state.lastSequence ?? 0)) {
      await this.keyFile.save({ ...state, challenge: response.challenge, registers: { ...response.registers }, lastSequence: sequence });
    }
    checkResponseReceipt(response, await this.receiptsFor([response]));
    this.lastReceipt = response.receipt;
    return response;
  }

  /** The receipt verifier, after learning any module named by these receipts that we do not know yet. */
  private async receiptsFor(withReceipts: unknown): Promise<ReceiptVerifier> {
    const list = Array.isArray(withReceipts) ? withReceipts as Array<{ receipt?: { moduleSerial?: unknown } }> : [];
    const serials = list.map((x) => x?.receipt?.moduleSerial).filter((x): x is string => typeof x === 'string');
    if (serials.some((serial) => !findModule(this.keyFile.state, serial))) {
      try {
        await this.refreshModules();
      } catch {
        // The receipt check then reports the unknown module.
      }
    }
    return this.receipts;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    // a re-key left unsettled (by a crash or a lost link) is settled before anything else is sent
    const go = async () => {
      if (this.keyFile.state.pendingRekey) await this.settleRekey();
      return fn();
    };
    const run = this.queue.then(go, go);
    this.queue = run.then(() => undefined, () => undefined);
    return run;
  }

  private async report(outcome: { batchId?: string; items: PrintedItem[]; registers: RegisterEcho }, onProgress?: (p: PrintProgress) => void | Promise<void>): Promise<PrintOutcome> {
    const total = outcome.items.length;
    let done = 0;
    for (const item of outcome.items) {
      done++;
      await onProgress?.({ done, total, item });
    }
    const count = (s: PrintedItem['status']) => outcome.items.filter((i) => i.status === s).length;
    return { ...outcome, printed: count('printed'), voided: count('voided'), failed: count('failed'), unverified: count('unverified') };
  }
}
