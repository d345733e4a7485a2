import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type * as graphene from 'graphene-pk11';
import * as pkcs11 from 'pkcs11js';

/**
 * Token threads: the mechanism calls of the hot path (sign, verify, encrypt, decrypt) and the
 * token-object writes run synchronously on a few worker threads (packages/server/src/hsm/token-thread.ts)
 * instead of as pkcs11js's asynchronous calls. An asynchronous pkcs11js call still runs its
 * *Init and the object lookups on the event loop and costs a thread-pool round trip per call;
 * measured on SoftHSM2 the event loop spent about 0.17 ms per call that way, against a
 * signature that takes the token about 0.05–0.08 ms. Here a call costs the event loop one message,
 * and several calls on one session go in one message (TokenThreads.run).
 *
 * Each job runs on a session the caller holds (from the module's session pool), so "one
 * operation at a time per session" and the pool's recovery stay as they are: a token error comes
 * back as the same Pkcs11Error (CKR code) the asynchronous call would have thrown.
 */
export interface TokenCall {
  fn: 'sign' | 'verify' | 'encrypt' | 'decrypt' | 'create' | 'destroy-found';
  mechanism?: pkcs11.Mechanism;
  /** The key's object handle. */
  key?: Buffer;
  data?: Buffer;
  signature?: Buffer;
  /** create: the object's attributes; destroy-found: the attributes of the objects to destroy. */
  template?: pkcs11.Template;
}

/** What one call returned: `value` (sign, encrypt, decrypt), `ok` (verify) or the token's error. */
export interface TokenResult {
  value?: Buffer;
  ok?: boolean;
  error?: { message: string; code: number; method: string };
}

export interface TokenJob { id: number; session: Buffer; calls: TokenCall[] }
export interface TokenReply { id: number; results: TokenResult[] }

/** Default number of token threads: one per core, at most 4. */
export function defaultTokenThreads(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

interface Thread { worker: Worker; pending: Set<number> }
interface Waiting { resolve: (r: TokenResult[]) => void; reject: (e: Error) => void }

export class TokenThreads {
  private threads: Thread[] = [];
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 1;
  private closed = false;
  private alive = 0;

  constructor(private readonly library: string, private readonly count: number) {}

  /**
   * Runs `calls` one after the other on `session` (a session handle the caller holds until this
   * settles) on the least busy thread; every call's result, errors included.
   */
  run(session: Buffer, calls: TokenCall[]): Promise<TokenResult[]> {
    if (this.closed) return Promise.reject(new Error('the PKCS#11 library is closed'));
    const thread = this.pick();
    const id = this.nextId++;
    return new Promise<TokenResult[]>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      if (thread.pending.size === 0) thread.worker.ref(); // a call in flight keeps the process alive
      thread.pending.add(id);
      const job: TokenJob = { id, session, calls };
      thread.worker.postMessage(job);
    });
  }

  /** One call; its value, or its error thrown as pkcs11js throws it. */
  async call(session: Buffer, c: TokenCall): Promise<TokenResult> {
    const [r] = await this.run(session, [c]);
    return settled(r);
  }

  /** Threads started and not yet exited (closing ones included). */
  get running(): number {
    return this.alive;
  }

  /** Stops the threads; calls still waiting fail; resolves once every thread has exited. Await it before C_Finalize. */
  close(): Promise<void> {
    this.closed = true;
    const threads = this.threads.splice(0);
    for (const t of threads) this.fail(t, new Error('the PKCS#11 library is closed'));
    return Promise.all(threads.map((t) => t.worker.terminate())).then(() => undefined);
  }

  private pick(): Thread {
    if (this.threads.length === 0) {
      for (let i = 0; i < this.count; i++) this.threads.push(this.spawn());
    }
    let best = this.threads[0];
    for (const t of this.threads) if (t.pending.size < best.pending.size) best = t;
    return best;
  }

  private spawn(): Thread {
    const worker = new Worker(join(__dirname, 'token-thread.js'), { workerData: { library: this.library } });
    const thread: Thread = { worker, pending: new Set() };
    this.alive++;
    worker.once('exit', () => this.alive--);
    worker.on('message', (reply: TokenReply) => {
      thread.pending.delete(reply.id);
      if (thread.pending.size === 0) thread.worker.unref();
      const w = this.waiting.get(reply.id);
      this.waiting.delete(reply.id);
      // structured clone hands Buffers back as plain Uint8Arrays
      w?.resolve(reply.results.map((r) => (r.value ? { ...r, value: Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength) } : r)));
    });
    const lost = (why: string) => {
      // a thread that died takes its calls with it; the next call starts a new one
      this.threads = this.threads.filter((t) => t !== thread);
      this.fail(thread, new Error(`token thread stopped: ${why}`));
    };
    worker.on('error', (e) => lost(e.message));
    worker.on('exit', (code) => lost(`exit ${code}`));
    // an idle thread does not keep the process alive (after the listeners: adding a 'message'
    // listener refs the thread's port again)
    worker.unref();
    return thread;
  }

  private fail(thread: Thread, e: Error): void {
    for (const id of thread.pending) {
      const w = this.waiting.get(id);
      this.waiting.delete(id);
      w?.reject(e);
    }
    thread.pending.clear();
  }
}

const byModule = new WeakMap<graphene.Module, TokenThreads>();

/** Records the token threads of an initialised library (packages/server/src/hsm/pkcs11-library.ts). */
export function setLibraryThreads(module: graphene.Module, threads: TokenThreads): void {
  byModule.set(module, threads);
}

/** The token threads of an initialised library. */
export function libraryThreads(module: graphene.Module): TokenThreads | undefined {
  return byModule.get(module);
}

/** The token threads of a session's library. */
export function threadsOf(session: graphene.Session): TokenThreads {
  const t = byModule.get(session.slot.module);
  if (!t) throw new Error('the PKCS#11 library was opened without token threads');
  return t;
}

/** The error of a failed call, as pkcs11js would have thrown it (a Pkcs11Error with the same message and CKR code). */
export function tokenError(r: TokenResult): Error {
  const e = r.error!;
  return e.code ? new pkcs11.Pkcs11Error(`${e.message}:${e.code}`, e.code, e.method) : new Error(e.message);
}

/** `r`, or its error thrown. */
function settled(r: TokenResult): TokenResult {
  if (r.error) throw tokenError(r);
  return r;
}
