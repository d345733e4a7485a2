import { vbiError } from '@vbi/core/errors';
import { Operation, OperationalRequest, OperationalResponse, Receipt, ResyncResponse } from '@vbi/core/protocol/messages';
import { ClientState, findModule, KnownModule } from './client-state';
import { buildResyncRequest, checkResyncResponse } from './resync';
import { buildEnvelope, checkResponseMac, checkResponseReceipt, outOfStep } from './envelope';
import { HttpClient, NetworkError } from './http';
import type { KeyFile } from './key-file';
import { moveToAnotherModule } from './module-move';
import { checkModuleCertificate, ReceiptVerifier } from './module-trust';
import { ClientSession, endsSession } from './session';
import { recoverPending, RecoveredRequest } from './recovery';
import { settleRekey } from './rekey';
import type { WireModule } from './wire';

/** How an operational call finds out what happened to a request whose answer was lost. */
export interface LostAnswerRecovery<R> {
  lostAnswer?: 'repeat' | ((rs: ResyncResponse) => Receipt | undefined);
  result?: (receipt: Receipt) => R;
}

/**
 * The state behind one VbiClient (./vbi-client.ts) and its operational call: the key file, the
 * HMK and password secret, the verified modules, the open session and the queue that runs calls
 * one at a time. VbiClient holds it privately; the section files (purchases, session-lifecycle,
 * printing, pending-requests, recovery, redelivery, rekey) work on it.
 */
export class ClientCore {
  hmk: Buffer;
  receipts: ReceiptVerifier;
  current: ClientSession | undefined;
  /** The receipt of the last operational call. */
  lastReceipt: Receipt | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  /**
   * `pwSecret` = passwordSecret(password, meterId), kept instead of the password for
   * session-open; the key file is already decrypted.
   */
  constructor(readonly keyFile: KeyFile<ClientState>, readonly http: HttpClient, readonly clock: () => number, public pwSecret: Buffer,
    readonly onRecovered?: (r: RecoveredRequest) => void | Promise<void>) {
    this.hmk = Buffer.from(keyFile.state.hmk, 'base64');
    this.receipts = new ReceiptVerifier(keyFile.state.modules);
  }

  get meterId(): string {
    return this.keyFile.state.meterId;
  }

  serial<T>(fn: () => Promise<T>): Promise<T> {
    // a re-key left unsettled (by a crash or a lost link) is settled before anything else is sent
    const go = async () => {
      if (this.keyFile.state.pendingRekey) await settleRekey(this);
      return fn();
    };
    const run = this.queue.then(go, go);
    this.queue = run.then(() => undefined, () => undefined);
    return run;
  }

  /** recover() inside the queue (./recovery.ts). */
  recoverPending(): Promise<RecoveredRequest[]> {
    return recoverPending(this);
  }

  /**
   * One operational call: envelope, send, accept; serialised. When the service says the
   * client's challenge or registers are stale, the client resyncs and sends it once more. When
   * the answer is lost (network failure), the client resyncs and either sends it again
   * (`lostAnswer: 'repeat'`: reads, and requests whose repetition is harmless) or finds its
   * signed receipt among the transactions since (`lostAnswer(resync)`), else sends it again.
   */
  operate<R>(op: Operation, path: string, body: unknown, recovery: LostAnswerRecovery<R> = {}): Promise<OperationalResponse<R>> {
    return this.serial(async () => {
      await this.recoverPending();
      return this.operateNow<R>(op, path, body, recovery);
    });
  }

  async operateNow<R>(op: Operation, path: string, body: unknown, recovery: LostAnswerRecovery<R> = {}): Promise<OperationalResponse<R>> {
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

  send(op: Operation, path: string, body: unknown, idempotencyKey?: string): Promise<unknown> {
    return this.http.post<unknown>(path, this.envelope(op, body), { idempotencyKey });
  }

  envelope(op: Operation, body: unknown): OperationalRequest {
    const s = this.keyFile.state;
    return buildEnvelope({ meterId: s.meterId, op, challenge: s.challenge, registers: s.registers, body, hmk: this.hmk }) as OperationalRequest;
  }

  /**
   * MAC check, save challenge and registers, receipt check (see the VbiClient class comment for
   * the order). An answer older than the newest receipt the client saw (a replay fetched late)
   * does not move the saved challenge and registers back.
   */
  async accept<R>(raw: unknown, op: Operation): Promise<OperationalResponse<R>> {
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
  async receiptsFor(withReceipts: unknown): Promise<ReceiptVerifier> {
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

  /** The resync exchange (VbiClient.resync) inside the queue: checked, then saved. */
  async resyncNow(afterSequence = this.keyFile.state.lastSequence ?? 0): Promise<ResyncResponse> {
    const request = buildResyncRequest({ meterId: this.meterId, hmk: this.hmk, afterSequence, clientTime: this.clock() });
    const raw = await this.http.post<unknown>('/v1/resync', request, { safeToRepeat: true });
    const serial = (raw as { moduleSerial?: unknown } | null)?.moduleSerial;
    if (typeof serial === 'string' && !findModule(this.keyFile.state, serial)) await this.refreshModules().catch(() => undefined);
    const r = checkResyncResponse({ response: raw, request, hmk: this.hmk, modules: this.keyFile.state.modules });
    await this.keyFile.save({ ...this.keyFile.state, challenge: r.challenge, registers: { ...r.registers }, lastSequence: r.sequence });
    return r;
  }

  /** moveModule inside the queue: the new serial, or undefined when no other module is listed. */
  async moveNow(): Promise<string | undefined> {
    const moved = await moveToAnotherModule({ http: this.http, keyFile: this.keyFile, at: new Date(this.clock()) });
    if (moved) this.receipts = new ReceiptVerifier(this.keyFile.state.modules);
    return moved;
  }

  /** VbiClient.refreshModules: modules added since registration, each certificate checked first. */
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

  requireSession(): ClientSession {
    const s = this.current;
    if (!s) throw vbiError('SESSION_NOT_FOUND', 'no session is open (openSession first)');
    if (s.ended) throw vbiError('SESSION_ENDED', `session ${s.sessionId} is over: ${s.ended.message}`);
    return s;
  }

  /** `fn` in `session`; an error that means the session is over ends it. */
  async sessionCall<T>(session: ClientSession, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (endsSession(e)) session.end(e as Error);
      throw e;
    }
  }
}
