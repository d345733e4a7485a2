/**
 * A token thread (packages/server/src/hsm/token-threads.ts): a worker thread that runs mechanism calls of the
 * process's PKCS#11 library synchronously, each on the session handle the main thread holds for
 * it. It loads the same library file, which the process has already initialised (dlopen hands
 * back the loaded library, and C_Initialize state, login state, sessions and object handles
 * belong to the process), so it never calls C_Initialize, C_Login or C_Finalize.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as pkcs11 from 'pkcs11js';
import type { TokenCall, TokenJob, TokenReply, TokenResult } from './token-threads';

/** Room for the largest signature (RSA-4096) or MAC. */
const SIGNATURE_ROOM = 512;

const lib = new pkcs11.PKCS11();
lib.load((workerData as { library: string }).library);

function buf(u: Uint8Array): Buffer {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/** Structured clone hands Buffers over as plain Uint8Arrays: make them Buffers again (one level deep in objects). */
function revive<T>(x: T): T {
  if (x instanceof Uint8Array) return buf(x) as T;
  if (x && typeof x === 'object' && !Array.isArray(x)) {
    return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, v instanceof Uint8Array ? buf(v) : v])) as T;
  }
  return x;
}

function template(t: TokenCall['template']): pkcs11.Template {
  return (t ?? []).map((a) => ({ type: a.type, value: revive(a.value) }));
}

function run(session: Buffer, c: TokenCall): TokenResult {
  const key = c.key ? buf(c.key) : undefined;
  const mechanism = c.mechanism ? { mechanism: c.mechanism.mechanism, parameter: revive(c.mechanism.parameter) } : undefined;
  switch (c.fn) {
    case 'sign':
      lib.C_SignInit(session, mechanism!, key!);
      return { value: Buffer.from(lib.C_Sign(session, buf(c.data!), Buffer.alloc(SIGNATURE_ROOM))) };
    case 'verify':
      lib.C_VerifyInit(session, mechanism!, key!);
      return { ok: lib.C_Verify(session, buf(c.data!), buf(c.signature!)) };
    case 'encrypt':
      lib.C_EncryptInit(session, mechanism!, key!);
      return { value: Buffer.from(lib.C_Encrypt(session, buf(c.data!), Buffer.alloc(c.data!.length + 64))) };
    case 'decrypt':
      lib.C_DecryptInit(session, mechanism!, key!);
      return { value: Buffer.from(lib.C_Decrypt(session, buf(c.data!), Buffer.alloc(c.data!.length + 64))) };
    case 'create':
      lib.C_CreateObject(session, template(c.template));
      return {};
    case 'destroy-found': {
      lib.C_FindObjectsInit(session, template(c.template));
      let found: Buffer[];
      try {
        found = lib.C_FindObjects(session, 1024);
      } finally {
        lib.C_FindObjectsFinal(session);
      }
      for (const h of found) lib.C_DestroyObject(session, h);
      return {};
    }
  }
}

parentPort!.on('message', (job: TokenJob) => {
  const session = buf(job.session);
  const results: TokenResult[] = job.calls.map((c) => {
    try {
      return run(session, c);
    } catch (e) {
      const err = e as { message?: string; code?: unknown; method?: string };
      return { error: { message: String(err.message ?? e), code: typeof err.code === 'number' ? err.code : 0, method: err.method ?? c.fn } };
    }
  });
  const reply: TokenReply = { id: job.id, results };
  parentPort!.postMessage(reply);
});
