import { vbiError } from '@vbi/core/errors';
import * as ops from './async-ops';
import { sha256 } from './module-keys';
import type { ModuleLifecycle } from './module-lifecycle';

/** The module identity key: the module's signatures (receipts, reports, certificates) and its health check. */

/**
 * Is the token working? A signature with the identity key, verified, and a few random bytes:
 * what the transaction engine asks before taking the module out of rotation for a token error,
 * and again before putting it back.
 */
export async function healthCheck(m: ModuleLifecycle): Promise<{ ok: boolean; reason?: string }> {
  try {
    await m.run('health check', async (s, k) => {
      const digest = sha256(Buffer.from(`vbi health ${Date.now()}`));
      const sig = await ops.sign(s, 'ECDSA', k.identity, digest);
      if (!(await ops.verify(s, 'ECDSA', k.identityPub, digest, sig))) throw vbiError('MODULE_ERROR', 'identity signature does not verify');
      s.generateRandom(8);
    });
    return { ok: true };
  } catch (e) {
    return { ok: false, reason: (e as Error).message };
  }
}

/** Raw r||s ECDSA over SHA-256(data). */
export function identitySign(m: ModuleLifecycle, data: Buffer): Promise<Buffer> {
  return m.run('identity sign', (s, k) => ops.sign(s, 'ECDSA', k.identity, sha256(data)));
}
