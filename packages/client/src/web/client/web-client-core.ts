import { vbiError, isVbiError } from '@vbi/core/errors';
import type { ClientState } from '../../client/client-state';
import { HttpClient, NetworkError } from '../../client/http';
import {
  dynamicPasswordInput, Operation, OperationalRequest, OperationalResponse,
  ResyncResponse, resyncMacInput, resyncResponseMacInput, resyncSignedBytes,
} from '@vbi/core/protocol/messages';
import { checkReceiptMatchesResponse, isOutOfStepCode, isRegisters } from '@vbi/core/protocol/envelope';
import { hmacSha256, macMatches, randomBytes, verifyEcdsaP256 } from '../crypto/web-crypto';
import type { WebKeyFile } from '../crypto/web-key-file';
import { WebReceiptVerifier } from '../crypto/web-module-trust';
import { buildWebEnvelope, checkWebResponseMac } from './web-envelope';
import { moveToAnotherModuleWeb } from './web-module-move';
import type { WebSession } from './web-session';

/** Where the client writes its key file after every change (the page: browser storage). */
export type Persist = (keyFileText: string) => void | Promise<void>;

/**
 * The state behind one WebClient (./web-client.ts) and its operational call: the key file, the
 * password secret, the verified modules, the open session and the one queue every call
 * (heartbeats included) runs through. WebClient holds it privately; the section files
 * (web-session-lifecycle, web-printing, web-pending) work on it.
 */
export class WebClientCore {
  receipts: WebReceiptVerifier;
  current: WebSession | undefined;
  /** Called when the session ends or its link drops or comes back (the page's banner). */
  onSessionChange: ((s: WebSession) => void) | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(readonly file: WebKeyFile<ClientState>, readonly http: HttpClient, readonly pwSecret: Buffer, private readonly persist: Persist) {
    this.receipts = new WebReceiptVerifier(() => this.file.state.modules);
  }

  get meterId(): string {
    return this.file.state.meterId;
  }

  hmk(): Buffer {
    return Buffer.from(this.file.state.hmk, 'base64');
  }

  async save(state: ClientState): Promise<void> {
    await this.persist(await this.file.save(state));
  }

  serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.then(() => undefined, () => undefined);
    return run;
  }

  operate<R>(op: Operation, path: string, body: unknown): Promise<OperationalResponse<R>> {
    return this.serial(() => this.operateNow<R>(op, path, body));
  }

  /** Envelope, send, accept; once more after a resync when the service says the client is out of step. */
  async operateNow<R>(op: Operation, path: string, body: unknown): Promise<OperationalResponse<R>> {
    const send = async () => this.http.post<unknown>(path, await this.envelope(op, body));
    try {
      return await this.accept<R>(await send(), op);
    } catch (e) {
      if (!isOutOfStepCode(codeOf(e))) throw e;
      await this.resyncNow().catch(() => Promise.reject(e));
      return this.accept<R>(await send(), op);
    }
  }

  /** The HMAC envelope of docs/protocol.md 2 over the state's challenge and registers (the SDK's buildEnvelope). */
  async envelope(op: Operation, rawBody: unknown): Promise<OperationalRequest> {
    const s = this.file.state;
    return buildWebEnvelope({ meterId: s.meterId, op, challenge: s.challenge, registers: s.registers, body: rawBody as Record<string, unknown>, hmk: this.hmk() });
  }

  /** The SDK's checkResponseMac, save, checkResponseReceipt, in that order (see VbiClient). */
  async accept<R>(raw: unknown, op: Operation): Promise<OperationalResponse<R>> {
    const response = await checkWebResponseMac<R>({ response: raw, meterId: this.meterId, op, hmk: this.hmk() });
    const state = this.file.state;
    const sequence = Number.isSafeInteger(response.receipt.sequence) ? response.receipt.sequence : 0;
    if (sequence >= (state.lastSequence ?? 0)) await this.save({ ...state, challenge: response.challenge, registers: { ...response.registers }, lastSequence: sequence });
    checkReceiptMatchesResponse(response);
    const rc = response.receipt;
    if (!(await this.receipts.verify(rc))) throw vbiError('CERT_INVALID', `the ${op} receipt signature does not verify with module ${rc.moduleSerial}'s identity key`);
    return response;
  }

  /** The resync exchange: HMAC over a fresh nonce; the answer's HMAC and module signature checked before its challenge and registers are adopted. */
  async resyncNow(afterSequence = this.file.state.lastSequence ?? 0): Promise<ResyncResponse> {
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

  /** The move of docs/protocol.md 8, inside the queue: the new serial, or undefined when no other module is listed. */
  async moveNow(): Promise<string | undefined> {
    const moved = await moveToAnotherModuleWeb({ http: this.http, state: () => this.file.state, save: (state) => this.save(state), at: new Date() });
    // the new module's entry replaces any listed at registration: identity keys read afresh
    if (moved) this.receipts = new WebReceiptVerifier(() => this.file.state.modules);
    return moved;
  }

  requireSession(): WebSession {
    const s = this.current;
    if (!s) throw vbiError('SESSION_NOT_FOUND', 'no session is open');
    if (s.ended) throw vbiError('SESSION_ENDED', `session ${s.sessionId} is over: ${s.ended.code}`);
    return s;
  }

  async dynamicPassword(d: { sessionId: string; counter: number; clientTime: number; purpose: 'heartbeat' | 'print'; destinationZip?: string; postage?: number }): Promise<string> {
    return (await hmacSha256(this.hmk(), dynamicPasswordInput({ meterId: this.meterId, ...d }))).toString('base64');
  }
}

/** The stable error code of a failure: the service's, NETWORK_ERROR, or ERROR. */
export function codeOf(e: unknown): string {
  if (e instanceof NetworkError) return 'NETWORK_ERROR';
  if (isVbiError(e)) return e.code;
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'ERROR';
}
