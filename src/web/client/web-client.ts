import { vbiError, isVbiError } from '../../errors';
import { indiciumAad, Payment, PrintAnswer, redeliveryAad } from '../../protocol/bodies';
import type { ClientState, KnownModule, PendingRequest } from '../../client/client-state';
import { FetchFn, HttpClient, NetworkError } from '../../client/http';
import { callsForMove, checkChallengeAnswer } from '../../client/challenge-answer';
import { checkPrintedIndicium, localDate, priceItem, PrintItemRequest } from '../../client/print-item';
import type {
  BalanceResult, HeartbeatAnswer, HistoryEntry, ModuleChallengeAnswer, PurchaseResult, RegistrationCompleted,
  RegistrationCreated, SessionOpened, WirePrintItem,
} from '../../client/wire';
import type { RefundRequest, RedeliverySelector } from '../../client/vbi-client';
import type { LabelSize } from '../../indicium/render/label-request';
import { decodeIndicium, DecodedIndicium } from '../../indicium/layout';
import {
  dynamicPasswordInput, Operation, OperationalRequest, OperationalResponse, Receipt,
  ResyncResponse, resyncMacInput, resyncResponseMacInput, resyncSignedBytes,
} from '../../protocol/messages';
import { isRegisters } from '../../protocol/envelope';
import { webPasswordSecret } from '../crypto/password-secret';
import { decryptWithSessionKey, encryptToModule, hmacSha256, macMatches, newSessionKey, randomBytes, randomUuid, verifyEcdsaP256 } from '../crypto/web-crypto';
import { WebKeyFile } from '../crypto/web-key-file';
import { checkModuleCertificateWeb, ModuleIdentity, verifyModuleProofWeb, WebReceiptVerifier } from '../crypto/web-module-trust';
import { buildWebEnvelope, checkWebResponseMac } from './web-envelope';
import { moveToAnotherModuleWeb } from './web-module-move';
import { WebSession } from './web-session';

/** One indicium the page holds: printed now or fetched again (reprint). */
export interface WebIndicium {
  indiciumId: number;
  indicium: Buffer;
  decoded: DecodedIndicium;
  receipt: Receipt;
}

/** One item of a print answer, checked. */
export interface WebPrintedItem {
  index: number;
  status: 'printed' | 'voided' | 'failed';
  reason?: string;
  printed?: WebIndicium;
}

/** Where the client writes its key file after every change (the page: browser storage). */
export type Persist = (keyFileText: string) => void | Promise<void>;

/** Codes after which the client resyncs and sends the request once more (the SDK's OUT_OF_STEP). */
const OUT_OF_STEP = ['STALE_CHALLENGE', 'REGISTER_MISMATCH'];

/**
 * The mailer's client in the browser: the SDK's protocol (src/client/vbi-client.ts) on
 * WebCrypto, with the key file in the CLI's format. Every operational call is one HMAC
 * envelope; the answer's HMAC is checked, the new challenge and registers saved, then the
 * module's receipt signature checked. Calls (heartbeats included) run one at a time.
 *
 * Purchases and prints are saved in the key file before they are sent, as the SDK saves them;
 * not carried over from the SDK: finishing them after a lost answer (recover(): the CLI's
 * `vbi recover` does it from the exported key file), corrections, re-key, and refreshing the
 * module list. Session-open moves to another module as the SDK's does (./web-module-move.ts).
 *
 * `fetch` (register, open) replaces the platform's fetch, as the SDK's HttpClient allows (tests).
 */
export class WebClient {
  private queue: Promise<unknown> = Promise.resolve();
  private receipts: WebReceiptVerifier;
  private current: WebSession | undefined;
  /** Called when the session ends or its link drops or comes back (the page's banner). */
  onSessionChange: ((s: WebSession) => void) | undefined;

  private constructor(private readonly file: WebKeyFile<ClientState>, private readonly http: HttpClient, private readonly pwSecret: Buffer, private readonly persist: Persist) {
    this.receipts = new WebReceiptVerifier(() => this.file.state.modules);
  }

  /**
   * Registration (docs/protocol.md 1a-1c) as in src/client/registration.ts: every module
   * certificate checked against the user's root, the module's signature over our nonce, then
   * the HMK and password secret RSA-OAEP-encrypted to its transport key. The key file is
   * persisted 'pending' before 1c and 'active' after hmkProof checks out.
   */
  static async register(req: {
    baseUrl: string; rootCertPem: string; name: string; licensingZip: string; returnAddress: string[]; password: string; persist: Persist;
    labelSize?: LabelSize; mailClass?: string; clock?: () => number; fetch?: FetchFn;
  }): Promise<{ client: WebClient; identity: ModuleIdentity }> {
    const http = new HttpClient({ baseUrl: req.baseUrl, fetch: req.fetch });
    const at = new Date((req.clock ?? Date.now)());
    const created = await http.post<RegistrationCreated>('/v1/registrations', { name: req.name, licensingZip: req.licensingZip, returnAddress: req.returnAddress });
    if (typeof created?.meterId !== 'string' || !Array.isArray(created.modules) || created.modules.length === 0) {
      throw vbiError('CERT_INVALID', 'the registration answer names no meter or no module');
    }
    for (const m of created.modules) await checkModuleCertificateWeb({ rootCertPem: req.rootCertPem, moduleSerial: m.serial, certificateChain: m.certificateChain, at });
    const modules: KnownModule[] = created.modules.map((m) => ({ serial: m.serial, transportKey: m.transportKey, oaepHash: m.oaepHash, certificateChain: m.certificateChain }));
    const chosen = modules[0];
    const clientNonce = randomBytes(32).toString('base64');
    const proof = await http.post<ModuleChallengeAnswer>(`/v1/registrations/${encodeURIComponent(created.meterId)}/challenge`, { moduleSerial: chosen.serial, clientNonce });
    checkChallengeAnswer(proof, chosen.serial);
    const identity = await checkModuleCertificateWeb({ rootCertPem: req.rootCertPem, moduleSerial: chosen.serial, certificateChain: proof.certificateChain, at });
    await verifyModuleProofWeb({ identity, meterId: created.meterId, clientNonce, transportKey: proof.transportKey, signature: proof.signature });
    const verified: KnownModule = { serial: chosen.serial, transportKey: proof.transportKey, oaepHash: proof.oaepHash, certificateChain: proof.certificateChain };
    modules[0] = verified;

    const hmk = randomBytes(32);
    const pending: ClientState = {
      version: 1, status: 'pending', serverUrl: req.baseUrl, meterId: created.meterId,
      accountId: created.accountId, registrationId: created.registrationId, registrationToken: created.registrationToken, moduleSerial: verified.serial,
      hmk: hmk.toString('base64'), challenge: '', registers: { ascending: 0, descending: 0 }, modules, rootCertPem: req.rootCertPem,
      defaults: {
        name: req.name, licensingZip: req.licensingZip, returnAddress: req.returnAddress,
        labelSize: req.labelSize ?? 'label-4x6', mailClass: req.mailClass ?? 'first-class-letter',
      },
    };
    const file = await WebKeyFile.create({ password: req.password, state: pending });
    await req.persist(file.text);
    const pwSecret = await webPasswordSecret(req.password, created.meterId);
    const done = await http.post<RegistrationCompleted>(`/v1/registrations/${encodeURIComponent(created.meterId)}/complete`, {
      moduleSerial: verified.serial, registrationToken: created.registrationToken,
      encryptedHmk: await encryptToModule(verified, hmk), encryptedPasswordSecret: await encryptToModule(verified, pwSecret),
    });
    const challenge = Buffer.from(String(done?.challenge ?? ''), 'base64');
    if (challenge.length === 0 || !(await macMatches(hmk, challenge, done?.hmkProof))) throw vbiError('BAD_MAC', 'hmkProof does not verify: the module did not take our HMK');
    if (!isRegisters(done.registers)) throw vbiError('BAD_MAC', 'registration answer has no registers');
    await req.persist(await file.save({ ...pending, status: 'active', challenge: done.challenge, registers: { ascending: done.registers.ascending, descending: done.registers.descending } }));
    return { client: new WebClient(file, http, pwSecret, req.persist), identity };
  }

  /** Opens a key file's text (the CLI's key.json or the browser's copy) with the password. */
  static async open(req: { text: string; name: string; password: string; baseUrl: string; persist: Persist; fetch?: FetchFn }): Promise<WebClient> {
    const file = await WebKeyFile.open<ClientState>({ text: req.text, password: req.password, name: req.name });
    if (file.state.version !== 1) throw vbiError('BAD_REQUEST', `key file ${req.name} has unsupported state version ${String(file.state.version)}`);
    if (file.state.status !== 'active') throw vbiError('NOT_REGISTERED', `registration of meter ${file.state.meterId} did not complete (key file ${req.name} is pending)`);
    const client = new WebClient(file, new HttpClient({ baseUrl: req.baseUrl, fetch: req.fetch }), await webPasswordSecret(req.password, file.state.meterId), req.persist);
    await req.persist(file.text);
    return client;
  }

  get meterId(): string {
    return this.file.state.meterId;
  }

  get state(): Readonly<ClientState> {
    return this.file.state;
  }

  /** The key file as the CLI reads it (export). */
  get keyFileText(): string {
    return this.file.text;
  }

  get session(): WebSession | undefined {
    return this.current;
  }

  /** The identity of a module this client verified (for the pages). */
  moduleIdentity(serial = this.file.state.moduleSerial): Promise<ModuleIdentity> {
    const m = this.file.state.modules.find((x) => x.serial === serial);
    if (!m) throw vbiError('CERT_INVALID', `no verified module ${serial}`);
    return checkModuleCertificateWeb({ rootCertPem: this.file.state.rootCertPem, moduleSerial: m.serial, certificateChain: m.certificateChain, at: new Date() });
  }

  balance(): Promise<BalanceResult> {
    return this.operate<BalanceResult>('balance', '/v1/balance', {}).then((r) => r.result);
  }

  history(limit = 50): Promise<HistoryEntry[]> {
    return this.operate<{ entries: HistoryEntry[] }>('history', '/v1/history', { limit }).then((r) => r.result.entries);
  }

  /** A postage value download; one Idempotency-Key per call (the service never takes a payment twice for it). */
  async buy(req: { amount: number; payment: Payment }): Promise<PurchaseResult & { receipt: Receipt }> {
    const r = await this.serial(() => this.sendPending('purchase', '/v1/purchases', { amount: req.amount, payment: req.payment }, async (p, raw) => {
      const response = await this.accept<PurchaseResult>(raw, 'purchase');
      await this.dropPending(p);
      return response;
    }));
    return { ...r.result, receipt: r.receipt };
  }

  /** Settles a pending (check, ACH) purchase once it cleared. */
  async settle(paymentId: number): Promise<PurchaseResult & { receipt: Receipt }> {
    const r = await this.operate<PurchaseResult>('purchase', `/v1/purchases/${paymentId}/settle`, { paymentId });
    return { ...r.result, receipt: r.receipt };
  }

  async refund(req: RefundRequest): Promise<{ refunded: number; receipt: Receipt }> {
    const r = await this.operate<{ refunded: number }>('refund', '/v1/refunds', req);
    return { ...r.result, receipt: r.receipt };
  }

  /**
   * The meter's transactions with the module's signed receipts (the resync exchange of
   * docs/protocol.md 6, which also re-reads the challenge and registers). Each entry says
   * whether its receipt signature verified.
   */
  async transactions(afterSequence = 0): Promise<Array<ResyncResponse['transactions'][number] & { receiptVerified?: boolean }>> {
    const out = [];
    for (let after = afterSequence, more = true; more;) {
      const rs = await this.serial(() => this.resyncNow(after));
      for (const t of rs.transactions) out.push({ ...t, receiptVerified: t.receipt ? await this.receipts.verify(t.receipt).catch(() => false) : undefined });
      // at most 200 per answer: ask again after the last one listed
      more = rs.more && rs.transactions.length > 0;
      after = rs.transactions.at(-1)?.sequence ?? after;
    }
    return out;
  }

  /**
   * session-open: the password secret proves the password; a fresh session key goes to the
   * module. Heartbeats start. When the service has no such module or it is not available
   * (UNKNOWN_MODULE, NO_MODULE: refused before any module ran anything), the client moves to
   * another module that proves itself (./web-module-move.ts, docs/protocol.md 8) and opens the
   * session there with a fresh session key, once.
   */
  async openSession(): Promise<WebSession> {
    if (this.current && !this.current.ended) throw vbiError('BAD_REQUEST', `session ${this.current.sessionId} is already open`);
    const open = async () => {
      const module = this.ownModule();
      const sk = await newSessionKey();
      try {
        const r = await this.operate<SessionOpened>('session-open', '/v1/sessions', {
          moduleSerial: module.serial, encryptedPasswordSecret: await encryptToModule(module, this.pwSecret), encryptedSessionKey: await encryptToModule(module, sk.raw),
        });
        return { r, key: sk.key };
      } finally {
        sk.raw.fill(0);
      }
    };
    let opened: Awaited<ReturnType<typeof open>>;
    try {
      opened = await open();
    } catch (e) {
      // refused before the module ran anything: move, then open with secrets for the new module
      if (!callsForMove(e) || !(await this.serial(() => this.moveNow()))) throw e;
      opened = await open();
    }
    const { r, key } = opened;
    const s = new WebSession(r.result.sessionId, key, r.result.heartbeatIntervalMs, r.result.timeoutMs);
    this.current = s;
    s.start(() => void this.heartbeat().catch(() => undefined));
    return s;
  }

  /** One heartbeat with a dynamic password; a failure marks the link down, an ending code ends the session. */
  heartbeat(): Promise<void> {
    return this.serial(async () => {
      const s = this.requireSession();
      const counter = s.nextCounter();
      const clientTime = Date.now();
      const password = await this.dynamicPassword({ sessionId: s.sessionId, counter, clientTime, purpose: 'heartbeat' });
      try {
        await this.http.post<HeartbeatAnswer>(`/v1/sessions/${encodeURIComponent(s.sessionId)}/heartbeat`, { meterId: this.meterId, counter, clientTime, dynamicPassword: password });
        s.linkError = undefined;
      } catch (e) {
        const code = codeOf(e);
        if (WebSession.ends(code)) s.end(code, (e as Error).message);
        else s.linkError = { code, message: (e as Error).message };
        throw e;
      } finally {
        this.onSessionChange?.(s);
      }
    });
  }

  async closeSession(): Promise<void> {
    const s = this.current;
    if (!s) return;
    s.stop();
    try {
      if (!s.ended) await this.operate('session-close', `/v1/sessions/${encodeURIComponent(s.sessionId)}/close`, { sessionId: s.sessionId });
    } catch (e) {
      if (!WebSession.ends(codeOf(e))) throw e;
    } finally {
      s.end('SESSION_ENDED', 'session closed');
      this.current = undefined;
    }
  }

  /**
   * A print batch in the open session: each item priced (rate table) and given its counter and
   * dynamic password; the answer's indicia decrypted with the session key, their receipts'
   * signatures and fields checked. Items the session voided come back as 'voided'.
   */
  async print(items: PrintItemRequest[]): Promise<{ batchId?: string; items: WebPrintedItem[] }> {
    if (items.length < 1 || items.length > 500) throw vbiError('BAD_REQUEST', 'a print batch has 1 to 500 items', { field: 'items' });
    return this.serial(async () => {
      const s = this.requireSession();
      const clientTime = Date.now();
      const wire: WirePrintItem[] = [];
      for (const item of items) wire.push(await this.printItem(s, item, clientTime));
      let answer: PrintAnswer;
      let auth: OperationalResponse<{ batchId?: string }>;
      try {
        [answer, auth] = await this.sendPending('print', '/v1/indicia', { sessionId: s.sessionId, items: wire }, async (p, raw) => {
          const a = raw as PrintAnswer;
          const checked = await this.accept<{ batchId?: string }>(a?.authorization, 'print');
          await this.dropPending(p);
          return [a, checked] as const;
        }, items);
      } catch (e) {
        if (WebSession.ends(codeOf(e))) {
          s.end(codeOf(e), (e as Error).message);
          this.onSessionChange?.(s);
        }
        throw e;
      }
      const out: WebPrintedItem[] = [];
      for (const a of Array.isArray(answer.items) ? answer.items : []) {
        if (a.status !== 'printed') {
          out.push({ index: a.index, status: a.status, reason: a.reason });
          if (a.status === 'voided' && WebSession.ends(a.reason)) s.end(a.reason ?? 'SESSION_ENDED', `the session ended before item ${a.index}`);
          continue;
        }
        const w = wire[a.index];
        if (!w || !a.receipt || typeof a.encryptedIndicium !== 'string') throw vbiError('INDICIUM_MALFORMED', `print answer item ${a.index} is incomplete`);
        const indicium = await decryptWithSessionKey({ sessionKey: s.sessionKey, encrypted: a.encryptedIndicium, aad: indiciumAad(s.sessionId, w.counter), what: `indicium (counter ${w.counter})` });
        out.push({ index: a.index, status: 'printed', printed: await this.checkIndicium(indicium, a.indiciumId ?? 0, a.receipt, (decoded) => checkPrintedIndicium({ indicium, item: w, meterId: this.meterId, receipt: a.receipt! }) && decoded) });
      }
      this.onSessionChange?.(s);
      return { batchId: auth.result?.batchId, items: out };
    });
  }

  /** Committed indicia again, encrypted to the open session (reprint): the same bytes as printed. */
  redeliver(selector: RedeliverySelector): Promise<WebIndicium[]> {
    return this.serial(async () => {
      const s = this.requireSession();
      const r = await this.operateNow<{ items: Array<{ indiciumId: number; encryptedIndicium: string; receipt: Receipt }> }>('redeliver', '/v1/indicia/redeliver', { sessionId: s.sessionId, ...selector });
      const out: WebIndicium[] = [];
      for (const x of Array.isArray(r.result?.items) ? r.result.items : []) {
        const indicium = await decryptWithSessionKey({ sessionKey: s.sessionKey, encrypted: x.encryptedIndicium, aad: redeliveryAad(s.sessionId, x.indiciumId), what: `redelivered indicium ${x.indiciumId}` });
        out.push(await this.checkIndicium(indicium, x.indiciumId, x.receipt, (decoded) => decoded));
      }
      return out;
    });
  }

  // --- internals -------------------------------------------------------------------------

  /** The module the key file names, with the transport key it proved. */
  private ownModule(): KnownModule {
    const s = this.file.state;
    const module = s.modules.find((m) => m.serial === s.moduleSerial);
    if (!module) throw vbiError('CERT_INVALID', `key file names module ${s.moduleSerial} but holds no verified key for it`);
    return module;
  }

  /** The move of docs/protocol.md 8, inside the queue: the new serial, or undefined when no other module is listed. */
  private async moveNow(): Promise<string | undefined> {
    const moved = await moveToAnotherModuleWeb({ http: this.http, state: () => this.file.state, save: (state) => this.save(state), at: new Date() });
    // the new module's entry replaces any listed at registration: identity keys read afresh
    if (moved) this.receipts = new WebReceiptVerifier(() => this.file.state.modules);
    return moved;
  }

  private async checkIndicium(indicium: Buffer, indiciumId: number, receipt: Receipt, check: (d: DecodedIndicium) => DecodedIndicium): Promise<WebIndicium> {
    if (!receipt || receipt.meterId !== this.meterId || !(await this.receipts.verify(receipt))) {
      throw vbiError('CERT_INVALID', `indicium ${indiciumId}: its receipt is not signed by a module of this meter`);
    }
    const decoded = check(decodeIndicium(indicium));
    const f = decoded.fields;
    if (f.meterId !== this.meterId || f.postage !== receipt.amount || f.ascendingRegister !== receipt.ascendingRegister || f.descendingRegister !== receipt.descendingRegister) {
      throw vbiError('INDICIUM_FIELD_INVALID', `indicium ${indiciumId} does not match its signed receipt`);
    }
    return { indiciumId, indicium, decoded, receipt };
  }

  private async printItem(s: WebSession, item: PrintItemRequest, clientTime: number): Promise<WirePrintItem> {
    if (!/^(\d{5}|\d{9}|\d{11})$/.test(item.destinationZip)) {
      throw vbiError('BAD_REQUEST', `destination ZIP '${item.destinationZip}' must have 5, 9 or 11 digits`, { field: 'destinationZip' });
    }
    const { postage } = priceItem(item, new Date(clientTime));
    const counter = s.nextCounter();
    return {
      counter, clientTime, destinationZip: item.destinationZip, postage,
      ...(item.rate ? { rate: { mailClass: item.rate.mailClass, weightOz: item.rate.weightOz, ...(item.rate.zone !== undefined ? { zone: item.rate.zone } : {}) } } : {}),
      itemType: item.itemType ?? 'postage',
      dateOfMailing: item.dateOfMailing ?? localDate(clientTime),
      dynamicPassword: await this.dynamicPassword({ sessionId: s.sessionId, counter, clientTime, purpose: 'print', destinationZip: item.destinationZip, postage }),
    };
  }

  private async dynamicPassword(d: { sessionId: string; counter: number; clientTime: number; purpose: 'heartbeat' | 'print'; destinationZip?: string; postage?: number }): Promise<string> {
    return (await hmacSha256(this.hmk(), dynamicPasswordInput({ meterId: this.meterId, ...d }))).toString('base64');
  }

  private hmk(): Buffer {
    return Buffer.from(this.file.state.hmk, 'base64');
  }

  private requireSession(): WebSession {
    const s = this.current;
    if (!s) throw vbiError('SESSION_NOT_FOUND', 'no session is open');
    if (s.ended) throw vbiError('SESSION_ENDED', `session ${s.sessionId} is over: ${s.ended.code}`);
    return s;
  }

  private operate<R>(op: Operation, path: string, body: unknown): Promise<OperationalResponse<R>> {
    return this.serial(() => this.operateNow<R>(op, path, body));
  }

  /** Envelope, send, accept; once more after a resync when the service says the client is out of step. */
  private async operateNow<R>(op: Operation, path: string, body: unknown): Promise<OperationalResponse<R>> {
    const send = async () => this.http.post<unknown>(path, await this.envelope(op, body));
    try {
      return await this.accept<R>(await send(), op);
    } catch (e) {
      if (!OUT_OF_STEP.includes(codeOf(e))) throw e;
      await this.resyncNow().catch(() => Promise.reject(e));
      return this.accept<R>(await send(), op);
    }
  }

  /** The HMAC envelope of docs/protocol.md 2 over the state's challenge and registers (the SDK's buildEnvelope). */
  private async envelope(op: Operation, rawBody: unknown): Promise<OperationalRequest> {
    const s = this.file.state;
    return buildWebEnvelope({ meterId: s.meterId, op, challenge: s.challenge, registers: s.registers, body: rawBody as Record<string, unknown>, hmk: this.hmk() });
  }

  /**
   * A request that moves money or prints value, as the SDK sends it: saved in the key file
   * (the SDK's `pending` list, same format) with its Idempotency-Key and bytes, then sent;
   * `finish` handles the answer and drops it. A refusal drops it (nothing happened); a request
   * refused because the client was out of step is sent once more after a resync. A lost answer
   * leaves it in the key file, where `vbi recover` finishes it with the same key and bytes.
   */
  private async sendPending<T>(op: 'purchase' | 'print', path: string, body: unknown, finish: (p: PendingRequest, raw: unknown) => Promise<T>, requests?: PrintItemRequest[]): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const p: PendingRequest = { op, path, idempotencyKey: randomUuid(), envelope: await this.envelope(op, body), requests, sentAt: Date.now() };
      await this.save({ ...this.file.state, pending: [...(this.file.state.pending ?? []), p] });
      let raw: unknown;
      try {
        raw = await this.http.post<unknown>(path, p.envelope, { idempotencyKey: p.idempotencyKey });
      } catch (e) {
        if (e instanceof NetworkError) {
          throw new NetworkError(`${e.message}; the ${op} request is kept in the key file: download it (Meter page) and run vbi recover to finish it`, e);
        }
        if (!isVbiError(e) || e.kind !== 'user') throw e;
        await this.dropPending(p);
        if (OUT_OF_STEP.includes(e.code) && attempt === 0) {
          await this.resyncNow().catch(() => Promise.reject(e));
          continue;
        }
        throw e;
      }
      return finish(p, raw);
    }
  }

  private async dropPending(p: PendingRequest): Promise<void> {
    await this.save({ ...this.file.state, pending: (this.file.state.pending ?? []).filter((x) => x.idempotencyKey !== p.idempotencyKey) });
  }

  /** The SDK's checkResponseMac, save, checkResponseReceipt, in that order (see VbiClient). */
  private async accept<R>(raw: unknown, op: Operation): Promise<OperationalResponse<R>> {
    const response = await checkWebResponseMac<R>({ response: raw, meterId: this.meterId, op, hmk: this.hmk() });
    const state = this.file.state;
    const sequence = Number.isSafeInteger(response.receipt.sequence) ? response.receipt.sequence : 0;
    if (sequence >= (state.lastSequence ?? 0)) await this.save({ ...state, challenge: response.challenge, registers: { ...response.registers }, lastSequence: sequence });
    const rc = response.receipt;
    if (rc.meterId !== response.meterId || rc.op !== response.op || rc.ascendingRegister !== response.registers.ascending || rc.descendingRegister !== response.registers.descending) {
      throw vbiError('CERT_INVALID', `the ${op} receipt does not match the response (meter, op or registers)`);
    }
    if (!(await this.receipts.verify(rc))) throw vbiError('CERT_INVALID', `the ${op} receipt signature does not verify with module ${rc.moduleSerial}'s identity key`);
    return response;
  }

  /** The resync exchange: HMAC over a fresh nonce; the answer's HMAC and module signature checked before its challenge and registers are adopted. */
  private async resyncNow(afterSequence = this.file.state.lastSequence ?? 0): Promise<ResyncResponse> {
    const unsigned = { meterId: this.meterId, clientNonce: randomBytes(32).toString('base64'), clientTime: Date.now(), afterSequence };
    const request = { ...unsigned, mac: (await hmacSha256(this.hmk(), resyncMacInput(unsigned))).toString('base64') };
    const r = await this.http.post<ResyncResponse>('/v1/resync', request, { safeToRepeat: true });
    if (!r || typeof r.challenge !== 'string' || !isRegisters(r.registers) || !Array.isArray(r.transactions) || typeof r.moduleSerial !== 'string') {
      throw vbiError('BAD_MAC', 'the resync answer is not a resync answer');
    }
    const { mac, ...withSignature } = r;
    if (!(await macMatches(this.hmk(), resyncResponseMacInput(withSignature), mac))) throw vbiError('BAD_MAC', 'the resync answer HMAC does not verify with our HMK');
    if (r.meterId !== this.meterId || r.clientNonce !== request.clientNonce) throw vbiError('BAD_MAC', 'the resync answer is not for this request');
    const { signature, ...signed } = withSignature;
    if (!(await verifyEcdsaP256(this.receipts.keyOf(r.moduleSerial), resyncSignedBytes(signed), signature))) {
      throw vbiError('CERT_INVALID', `the resync answer is not signed by module ${r.moduleSerial}`);
    }
    await this.save({ ...this.file.state, challenge: r.challenge, registers: { ...r.registers }, lastSequence: Math.max(r.sequence, this.file.state.lastSequence ?? 0) });
    return r;
  }

  private async save(state: ClientState): Promise<void> {
    await this.persist(await this.file.save(state));
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.then(() => undefined, () => undefined);
    return run;
  }
}

/** The stable error code of a failure: the service's, NETWORK_ERROR, or ERROR. */
export function codeOf(e: unknown): string {
  if (e instanceof NetworkError) return 'NETWORK_ERROR';
  if (isVbiError(e)) return e.code;
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'ERROR';
}
