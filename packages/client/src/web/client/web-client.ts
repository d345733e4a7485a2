import { vbiError } from '@vbi/core/errors';
import type { Payment } from '@vbi/core/protocol/bodies';
import type { ClientState } from '../../client/client-state';
import { FetchFn, HttpClient } from '../../client/http';
import type { PrintItemRequest } from '../../client/print-item';
import type { BalanceResult, HistoryEntry, PurchaseResult } from '../../client/wire';
import type { RefundRequest } from '../../client/purchases';
import type { RedeliverySelector } from '../../client/redelivery';
import type { Receipt, ResyncResponse } from '@vbi/core/protocol/messages';
import { webPasswordSecret } from '../crypto/password-secret';
import { WebKeyFile } from '../crypto/web-key-file';
import { checkModuleCertificateWeb, ModuleIdentity } from '../crypto/web-module-trust';
import { codeOf, Persist, WebClientCore } from './web-client-core';
import { dropPending, sendPending } from './web-pending';
import { print, redeliver, WebIndicium, WebPrintedItem } from './web-printing';
import { registerWeb, WebRegistrationRequest } from './web-registration';
import { closeSession, heartbeat, openSession } from './web-session-lifecycle';
import type { WebSession } from './web-session';

export { codeOf };
export type { Persist, WebIndicium, WebPrintedItem };

/**
 * The mailer's client in the browser: the SDK's protocol (packages/client/src/client/vbi-client.ts) on
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
  /** The client's state and its operational call (./web-client-core.ts); the sections work on it. */
  private readonly core: WebClientCore;

  private constructor(file: WebKeyFile<ClientState>, http: HttpClient, pwSecret: Buffer, persist: Persist) {
    this.core = new WebClientCore(file, http, pwSecret, persist);
  }

  /** Registration (docs/protocol.md 1a-1c, ./web-registration.ts): the key file persisted 'pending' before 1c, 'active' after. */
  static async register(req: WebRegistrationRequest): Promise<{ client: WebClient; identity: ModuleIdentity }> {
    const { file, http, pwSecret, identity } = await registerWeb(req);
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
    return this.core.file.state.meterId;
  }

  get state(): Readonly<ClientState> {
    return this.core.file.state;
  }

  /** The key file as the CLI reads it (export). */
  get keyFileText(): string {
    return this.core.file.text;
  }

  get session(): WebSession | undefined {
    return this.core.current;
  }

  /** The identity of a module this client verified (for the pages). */
  moduleIdentity(serial = this.core.file.state.moduleSerial): Promise<ModuleIdentity> {
    const m = this.core.file.state.modules.find((x) => x.serial === serial);
    if (!m) throw vbiError('CERT_INVALID', `no verified module ${serial}`);
    return checkModuleCertificateWeb({ rootCertPem: this.core.file.state.rootCertPem, moduleSerial: m.serial, certificateChain: m.certificateChain, at: new Date() });
  }

  /** Called when the session ends or its link drops or comes back (the page's banner). */
  get onSessionChange(): ((s: WebSession) => void) | undefined {
    return this.core.onSessionChange;
  }

  set onSessionChange(f: ((s: WebSession) => void) | undefined) {
    this.core.onSessionChange = f;
  }

  balance(): Promise<BalanceResult> {
    return this.core.operate<BalanceResult>('balance', '/v1/balance', {}).then((r) => r.result);
  }

  history(limit = 50): Promise<HistoryEntry[]> {
    return this.core.operate<{ entries: HistoryEntry[] }>('history', '/v1/history', { limit }).then((r) => r.result.entries);
  }

  /** A postage value download; one Idempotency-Key per call (the service never takes a payment twice for it). */
  async buy(req: { amount: number; payment: Payment }): Promise<PurchaseResult & { receipt: Receipt }> {
    const core = this.core;
    const r = await core.serial(() => sendPending(core, 'purchase', '/v1/purchases', { amount: req.amount, payment: req.payment }, async (p, raw) => {
      const response = await core.accept<PurchaseResult>(raw, 'purchase');
      await dropPending(core, p);
      return response;
    }));
    return { ...r.result, receipt: r.receipt };
  }

  /** Settles a pending (check, ACH) purchase once it cleared. */
  async settle(paymentId: number): Promise<PurchaseResult & { receipt: Receipt }> {
    const r = await this.core.operate<PurchaseResult>('purchase', `/v1/purchases/${paymentId}/settle`, { paymentId });
    return { ...r.result, receipt: r.receipt };
  }

  async refund(req: RefundRequest): Promise<{ refunded: number; receipt: Receipt }> {
    const r = await this.core.operate<{ refunded: number }>('refund', '/v1/refunds', req);
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
      const rs = await this.core.serial(() => this.core.resyncNow(after));
      for (const t of rs.transactions) out.push({ ...t, receiptVerified: t.receipt ? await this.core.receipts.verify(t.receipt).catch(() => false) : undefined });
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
  openSession(): Promise<WebSession> {
    return openSession(this.core, () => this.heartbeat());
  }

  /** One heartbeat with a dynamic password; a failure marks the link down, an ending code ends the session. */
  heartbeat(): Promise<void> {
    return heartbeat(this.core);
  }

  closeSession(): Promise<void> {
    return closeSession(this.core);
  }

  /**
   * A print batch in the open session: each item priced (rate table) and given its counter and
   * dynamic password; the answer's indicia decrypted with the session key, their receipts'
   * signatures and fields checked. Items the session voided come back as 'voided'.
   */
  print(items: PrintItemRequest[]): Promise<{ batchId?: string; items: WebPrintedItem[] }> {
    return print(this.core, items);
  }

  /** Committed indicia again, encrypted to the open session (reprint): the same bytes as printed. */
  redeliver(selector: RedeliverySelector): Promise<WebIndicium[]> {
    return redeliver(this.core, selector);
  }
}
