import { randomBytes, randomUUID } from 'node:crypto';
import { vbiError } from '../errors';
import { Operation, OperationalResponse, passwordSecret, Receipt, RegisterEcho } from '../protocol/messages';
import { encryptToModule } from './client-crypto';
import { ClientState, findModule, KnownModule } from './client-state';
import { dynamicPassword } from './dynamic-password';
import { buildEnvelope, checkResponseMac, checkResponseReceipt } from './envelope';
import { FetchFn, HttpClient, HttpClientOptions } from './http';
import { KeyFile } from './key-file';
import { checkModuleCertificate, ReceiptVerifier } from './module-trust';
import { buildPrintItem, PrintItemRequest } from './print-item';
import { checkPrintedItems, PrintedItem } from './print-results';
import { registerMeter, RegistrationRequest } from './registration';
import { ClientSession, endsSession, isEndingCode } from './session';
import { verifyIndiciumRemote } from './verify-remote';
import type {
  BalanceResult, CorrectionAnswer, HeartbeatAnswer, HistoryEntry, Payment, PrintAnswer, PurchaseResult, SessionOpened, VerifyAnswer,
  WireModule,
} from './wire';

/** Injectable dependencies (tests). */
export interface VbiClientOptions {
  fetch?: FetchFn;
  /** ms since epoch; default Date.now. */
  clock?: () => number;
  /** Retry and timeout settings of the HTTP layer. */
  http?: Omit<HttpClientOptions, 'baseUrl' | 'fetch'>;
}

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
  private readonly hmk: Buffer;
  private receipts: ReceiptVerifier;
  private queue: Promise<unknown> = Promise.resolve();
  private current: ClientSession | undefined;
  /** The receipt of the last operational call. */
  lastReceipt: Receipt | undefined;

  /**
   * `pwSecret` = passwordSecret(password, meterId), kept instead of the password for
   * session-open; the key file is already decrypted.
   */
  private constructor(private readonly keyFile: KeyFile<ClientState>, http: HttpClient, clock: () => number, private readonly pwSecret: Buffer) {
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
    return new VbiClient(file, http, clock, passwordSecret(req.password, file.state.meterId));
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
    return new VbiClient(file, http, req.clock ?? Date.now, passwordSecret(req.password, file.state.meterId));
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
    return (await this.operate<BalanceResult>('balance', '/v1/balance', {})).result;
  }

  /** `history`: the newest `limit` (1..500) movements. */
  async history(limit = 50): Promise<HistoryEntry[]> {
    if (!Number.isInteger(limit) || limit < 1 || limit > 500) throw vbiError('BAD_REQUEST', 'limit must be 1..500', { field: 'limit' });
    return (await this.operate<{ entries: HistoryEntry[] }>('history', '/v1/history', { limit })).result.entries;
  }

  /**
   * `purchase`: a postage value download paid with `payment`. One Idempotency-Key per call
   * (or the caller's, to continue an earlier attempt): a network failure is retried with the
   * same key and the same bytes, so the payment is never taken twice.
   */
  async buy(req: { amount: number; payment: Payment; idempotencyKey?: string }): Promise<PurchaseResult & { receipt: Receipt }> {
    const r = await this.operate<PurchaseResult>('purchase', '/v1/purchases', { amount: req.amount, payment: req.payment }, req.idempotencyKey ?? randomUUID());
    return { ...r.result, receipt: r.receipt };
  }

  /** Settles a pending (check) purchase: a cleared check is downloaded now. */
  async settle(paymentId: number): Promise<PurchaseResult & { receipt: Receipt }> {
    if (!Number.isSafeInteger(paymentId) || paymentId < 1) throw vbiError('BAD_REQUEST', 'paymentId must be a positive integer', { field: 'paymentId' });
    const r = await this.operate<PurchaseResult>('purchase', `/v1/purchases/${paymentId}/settle`, { paymentId });
    return { ...r.result, receipt: r.receipt };
  }

  /** `refund`: part of the descending register, or all of it. */
  async refund(req: RefundRequest): Promise<{ refunded: number; receipt: Receipt }> {
    const r = await this.operate<{ refunded: number }>('refund', '/v1/refunds', req);
    return { ...r.result, receipt: r.receipt };
  }

  /**
   * `session-open`: proves the password (the password secret, RSA-OAEP to the module transport
   * key; WRONG_PASSWORD) and hands the module a fresh 32-byte session key the same way.
   * Heartbeats start at heartbeatIntervalMs unless `heartbeats: false`.
   */
  async openSession(opts: { heartbeats?: boolean } = {}): Promise<ClientSession> {
    if (this.current && !this.current.ended) throw vbiError('BAD_REQUEST', `session ${this.current.sessionId} is already open`);
    const s = this.keyFile.state;
    const module = findModule(s, s.moduleSerial);
    if (!module) throw vbiError('CERT_INVALID', `key file names module ${s.moduleSerial} but holds no verified key for it`);
    const sessionKey = randomBytes(32);
    const r = await this.operate<SessionOpened>('session-open', '/v1/sessions', {
      moduleSerial: module.serial,
      encryptedPasswordSecret: encryptToModule(module, this.pwSecret),
      encryptedSessionKey: encryptToModule(module, sessionKey),
    });
    const { sessionId, heartbeatIntervalMs, timeoutMs } = r.result;
    const session = new ClientSession({
      sessionId, sessionKey, heartbeatIntervalMs, timeoutMs,
      beat: async (counter) => {
        await this.sendHeartbeat(sessionId, counter);
      },
    });
    this.current = session;
    if (opts.heartbeats !== false) session.startHeartbeats();
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
        await session.exclusive(() => this.operate('session-close', `/v1/sessions/${encodeURIComponent(session.sessionId)}/close`, { sessionId: session.sessionId }));
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
   * then `onProgress` runs once per item.
   */
  async print(items: PrintItemRequest[], opts: { onProgress?: (p: PrintProgress) => void | Promise<void>; idempotencyKey?: string } = {}): Promise<PrintOutcome> {
    if (items.length < 1 || items.length > 500) throw vbiError('BAD_REQUEST', 'a print batch has 1 to 500 items', { field: 'items' });
    const session = this.requireSession();
    const outcome = await session.exclusive(() => this.serial(async () => {
      const clientTime = this.clock();
      const wire = items.map((item) => buildPrintItem({
        meterId: this.meterId, sessionId: session.sessionId, counter: session.nextCounter(), clientTime, hmk: this.hmk, item,
      }));
      const answer = await this.sessionCall(session, () => this.send('print', '/v1/indicia', { sessionId: session.sessionId, items: wire }, opts.idempotencyKey ?? randomUUID())) as PrintAnswer;
      const auth = await this.accept<{ batchId?: string }>(answer?.authorization, 'print');
      const checked = checkPrintedItems({
        meterId: this.meterId, op: 'print', sessionId: session.sessionId, sessionKey: session.sessionKey,
        requests: items, items: wire, answered: Array.isArray(answer.items) ? answer.items : [],
        startRegisters: auth.registers, receipts: await this.receiptsFor(answer.items),
      });
      await this.keyFile.save({ ...this.keyFile.state, registers: checked.registers });
      const ended = checked.items.find((i) => i.status === 'voided' && isEndingCode(i.reason));
      if (ended) session.end(vbiError(ended.reason as 'SESSION_ENDED', `session ${session.sessionId} ended during the batch (item ${ended.index})`));
      return { batchId: auth.result?.batchId, ...checked };
    }));
    return this.report(outcome, opts.onProgress);
  }

  /**
   * `correction` (WO 99/41690): a correction indicium for the additional postage of indicium
   * `originalIndiciumId`, printed in the open session like one print item.
   */
  async correction(req: { originalIndiciumId: number; item: PrintItemRequest; idempotencyKey?: string }): Promise<PrintedItem> {
    const session = this.requireSession();
    return session.exclusive(() => this.serial(async () => {
      const wire = buildPrintItem({ meterId: this.meterId, sessionId: session.sessionId, counter: session.nextCounter(), clientTime: this.clock(), hmk: this.hmk, item: req.item });
      const body = { sessionId: session.sessionId, originalIndiciumId: req.originalIndiciumId, item: wire };
      const answer = await this.sessionCall(session, () => this.send('correction', '/v1/corrections', body, req.idempotencyKey ?? randomUUID())) as CorrectionAnswer;
      const auth = await this.accept(answer?.authorization, 'correction');
      const answered = answer.item ? [{ ...answer.item, index: 0 }] : [];
      const checked = checkPrintedItems({
        meterId: this.meterId, op: 'correction', sessionId: session.sessionId, sessionKey: session.sessionKey,
        requests: [req.item], items: [wire], answered, startRegisters: auth.registers, receipts: await this.receiptsFor(answered),
      });
      await this.keyFile.save({ ...this.keyFile.state, registers: checked.registers });
      return checked.items[0];
    }));
  }

  /**
   * Learns modules added since registration (GET /v1/modules): each identity certificate is
   * checked against the root saved at registration (CERT_INVALID otherwise) before its key is
   * trusted for receipts. Transport keys of these modules are not used: only the module that
   * proved itself in registration step 1b receives secrets.
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

  /** One operational call: envelope, send, accept; serialised. */
  private operate<R>(op: Operation, path: string, body: unknown, idempotencyKey?: string): Promise<OperationalResponse<R>> {
    return this.serial(async () => this.accept<R>(await this.send(op, path, body, idempotencyKey), op));
  }

  private send(op: Operation, path: string, body: unknown, idempotencyKey?: string): Promise<unknown> {
    const s = this.keyFile.state;
    const envelope = buildEnvelope({ meterId: s.meterId, op, challenge: s.challenge, registers: s.registers, body, hmk: this.hmk });
    return this.http.post<unknown>(path, envelope, { idempotencyKey });
  }

  /** MAC check, save challenge and registers, receipt check (see the class comment for the order). */
  private async accept<R>(raw: unknown, op: Operation): Promise<OperationalResponse<R>> {
    const response = checkResponseMac<R>({ response: raw, meterId: this.meterId, op, hmk: this.hmk });
    await this.keyFile.save({ ...this.keyFile.state, challenge: response.challenge, registers: { ...response.registers } });
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
    const run = this.queue.then(fn, fn);
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
