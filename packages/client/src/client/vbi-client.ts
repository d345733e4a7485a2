import { vbiError } from '@vbi/core/errors';
import { passwordSecret, Receipt, RegisterEcho, ResyncResponse } from '@vbi/core/protocol/messages';
import type { Payment } from '@vbi/core/protocol/bodies';
import type { ClientState } from './client-state';
import { ClientCore } from './client-core';
import { FetchFn, HttpClient, HttpClientOptions } from './http';
import { KeyFile } from './key-file';
import type { PrintItemRequest } from './print-item';
import type { PrintedItem } from './print-results';
import { buy, refund, RefundRequest, settle } from './purchases';
import { correction, print, PrintOutcome, PrintProgress } from './printing';
import type { RecoveredRequest } from './recovery';
import { redeliverNow, RedeliveredIndicium, RedeliverySelector } from './redelivery';
import { rekey, settleRekey } from './rekey';
import { registerMeter, RegistrationRequest } from './registration';
import type { ClientSession } from './session';
import { closeSession, openSession } from './session-lifecycle';
import { verifyIndiciumRemote } from './verify-remote';
import type { BalanceResult, HistoryEntry, PurchaseResult, VerifyAnswer } from './wire';

export type { PrintOutcome, PrintProgress, RecoveredRequest, RedeliveredIndicium, RedeliverySelector, RefundRequest };

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
  /** The client's state and its operational call (./client-core.ts); the sections work on it. */
  private readonly core: ClientCore;

  private constructor(keyFile: KeyFile<ClientState>, http: HttpClient, clock: () => number, pwSecret: Buffer, onRecovered?: VbiClientOptions['onRecovered']) {
    this.core = new ClientCore(keyFile, http, clock, pwSecret, onRecovered);
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
    return this.core.meterId;
  }

  /** The client's register copy (mills). */
  get registers(): RegisterEcho {
    return { ...this.core.keyFile.state.registers };
  }

  /** The saved state (read-only view: label defaults, modules, server URL). */
  get state(): Readonly<ClientState> {
    return this.core.keyFile.state;
  }

  /** The open session, if any. */
  get session(): ClientSession | undefined {
    return this.core.current;
  }

  /** The receipt of the last operational call. */
  get lastReceipt(): Receipt | undefined {
    return this.core.lastReceipt;
  }

  set lastReceipt(receipt: Receipt | undefined) {
    this.core.lastReceipt = receipt;
  }

  /** `balance`: the meter's registers and state. */
  async balance(): Promise<BalanceResult> {
    return (await this.core.operate<BalanceResult>('balance', '/v1/balance', {}, { lostAnswer: 'repeat' })).result;
  }

  /** `history`: the newest `limit` (1..500) movements. */
  async history(limit = 50): Promise<HistoryEntry[]> {
    if (!Number.isInteger(limit) || limit < 1 || limit > 500) throw vbiError('BAD_REQUEST', 'limit must be 1..500', { field: 'limit' });
    return (await this.core.operate<{ entries: HistoryEntry[] }>('history', '/v1/history', { limit }, { lostAnswer: 'repeat' })).result.entries;
  }

  /**
   * `purchase`: a postage value download paid with `payment`. One Idempotency-Key per call
   * (or the caller's, to continue an earlier attempt): the request is saved before it is sent, a
   * network failure is retried with the same key and the same bytes, and a request whose answer
   * never came is finished by recover() — the payment is never taken twice.
   */
  buy(req: { amount: number; payment: Payment; idempotencyKey?: string }): Promise<PurchaseResult & { receipt: Receipt }> {
    return buy(this.core, req);
  }

  /** Settles a pending (check) purchase: a cleared check is downloaded now. */
  settle(paymentId: number): Promise<PurchaseResult & { receipt: Receipt }> {
    return settle(this.core, paymentId);
  }

  /** `refund`: part of the descending register, or all of it. */
  refund(req: RefundRequest): Promise<{ refunded: number; receipt: Receipt }> {
    return refund(this.core, req);
  }

  /**
   * `session-open`: proves the password (the password secret, RSA-OAEP to the module transport
   * key; WRONG_PASSWORD) and hands the module a fresh 32-byte session key the same way.
   * Heartbeats start at heartbeatIntervalMs unless `heartbeats: false`. A print whose answer was
   * lost is then recovered in the new session (onRecovered). When the service has no such module
   * or it is not available (UNKNOWN_MODULE, NO_MODULE), the client moves to another module that
   * proves itself (moveModule) and opens the session there, once.
   */
  openSession(opts: { heartbeats?: boolean } = {}): Promise<ClientSession> {
    return openSession(this.core, opts);
  }

  /** Sends one heartbeat now (the timer does this every heartbeatIntervalMs). */
  async heartbeat(): Promise<void> {
    await this.core.requireSession().heartbeat();
  }

  /** Stops the heartbeat timer (tests; the session then times out on the service). */
  stopHeartbeats(): void {
    this.core.current?.stopHeartbeats();
  }

  /** `session-close`; a session the service already ended counts as closed. */
  closeSession(): Promise<void> {
    return closeSession(this.core);
  }

  /**
   * `print`: one authorisation envelope for the batch (1..500 items), each item with its own
   * counter and dynamic password; priced locally when it has a `rate`. The answer's items are
   * decrypted with the session key and checked (./print-results.ts); the register copy is saved;
   * then `onProgress` runs once per item. The request is saved before it is sent: if its answer
   * never comes, recover() (or the next call) fetches it with the same Idempotency-Key.
   */
  print(items: PrintItemRequest[], opts: { onProgress?: (p: PrintProgress) => void | Promise<void>; idempotencyKey?: string } = {}): Promise<PrintOutcome> {
    return print(this.core, items, opts);
  }

  /**
   * `correction` (WO 99/41690): a correction indicium for the additional postage of indicium
   * `originalIndiciumId`, printed in the open session like one print item.
   */
  correction(req: { originalIndiciumId: number; item: PrintItemRequest; idempotencyKey?: string }): Promise<PrintedItem> {
    return correction(this.core, req);
  }

  /**
   * The resync exchange (docs/protocol.md 6): the module's next challenge, the registers and the
   * meter's transactions after the newest receipt this client saw, checked (HMAC with the HMK,
   * signature of a verified module) and saved. The client does this by itself whenever the
   * service says its challenge or registers are not the module's, or an answer was lost.
   */
  resync(): Promise<ResyncResponse> {
    return this.core.serial(() => this.core.resyncNow());
  }

  /**
   * Finishes every purchase, print or correction whose answer was lost (the client crashed, the
   * network or the service failed): each is sent again with its Idempotency-Key and the same
   * bytes, so the service answers it from what committed — never a second payment, debit or
   * signature. Indicia of a print from an earlier session are fetched again in the open session
   * (redeliver); without an open session such a print stays pending (SESSION_NOT_FOUND).
   */
  recover(): Promise<RecoveredRequest[]> {
    return this.core.serial(async () => {
      if (this.core.keyFile.state.pendingRekey) await settleRekey(this.core);
      return this.core.recoverPending();
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
    return rekey(this.core, req);
  }

  /**
   * `redeliver`: committed indicia fetched again, encrypted to the open session: the same bytes
   * as printed (checked against their signed receipts), never a new signature or a second debit.
   */
  redeliver(selector: RedeliverySelector): Promise<RedeliveredIndicium[]> {
    const session = this.core.requireSession();
    return session.exclusive(() => this.core.serial(() => redeliverNow(this.core, selector)));
  }

  /**
   * Moves the client to another module of the service (./module-move.ts): the first module
   * `GET /v1/modules` lists besides the key file's proves itself as in registration step 1b
   * (CERT_INVALID otherwise, and the key file is not changed); the key file then names it and
   * holds its proven transport key. Session-open and re-key do this by themselves after
   * UNKNOWN_MODULE or NO_MODULE. NO_MODULE when no other module is listed. Returns the new serial.
   */
  moveModule(): Promise<string> {
    return this.core.serial(async () => {
      const from = this.core.keyFile.state.moduleSerial;
      const moved = await this.core.moveNow();
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
  refreshModules(): Promise<string[]> {
    return this.core.refreshModules();
  }

  /** POST /v1/verify: the service's verdict on an indicium. */
  verify(indicium: Buffer): Promise<VerifyAnswer> {
    return verifyIndiciumRemote(this.core.http, indicium);
  }

  /** Closes the session if one is open. */
  async close(): Promise<void> {
    await this.closeSession();
  }
}
