import { randomBytes } from 'node:crypto';
import * as graphene from 'graphene-pk11';
import { vbiError, VbiError } from '@vbi/core/errors';
import { IndiciumKeyAlgorithm, KeyRef, KeyScope } from './hsm-module';
import { aesGcm, GCM_IV_BYTES } from './mechanisms';
import { ckr } from './pkcs11-errors';
import * as ops from './async-ops';
import { TokenCall, tokenError } from './token-threads';
import { sha256 } from './module-keys';
import { HMAC_BYTES, unwrapChain } from './key-chains';
import { assertEnabled, signIndiciumData, unwrapIndiciumKey } from './indicium-keys';
import type { ModuleLifecycle } from './module-lifecycle';

/**
 * A key scope (KeyScope): one pooled session for `fn`, keys unwrapped once and destroyed in
 * `finally`. A session that fails recoverably runs `fn` again once on a new session (like every
 * other operation), so `fn` must produce its results only through its return value.
 */
export function withKeys<T>(m: ModuleLifecycle, fn: (keys: KeyScope) => Promise<T>): Promise<T> {
  // An error of the caller's own code (a database failure, a refusal) is the caller's: it
  // passes through as it is instead of becoming a token error (HSM_ERROR).
  let own: { error: unknown } | undefined;
  return m.run('key scope', async (s, k) => {
    const made: graphene.Key[] = [];
    const chains = new Map<string, graphene.Key>();
    const chainKey = async (chain: KeyRef[]): Promise<graphene.Key> => {
      let parent: graphene.Key = k.kek;
      let path = '';
      for (const ref of chain) {
        path += `${ref.usage}:${ref.wrapped.toString('base64')}/`;
        let key = chains.get(path);
        if (!key) {
          key = await unwrapChain(m, s, parent, [ref], made);
          chains.set(path, key);
        }
        parent = key;
      }
      return parent;
    };
    const indiciumKey = async (wrappedKey: Buffer, algorithm: IndiciumKeyAlgorithm): Promise<graphene.Key> => {
      assertEnabled(m, algorithm);
      const path = `indicium:${algorithm}:${wrappedKey.toString('base64')}`;
      let key = chains.get(path);
      if (!key) {
        key = await unwrapIndiciumKey(m, s, k, wrappedKey, algorithm);
        made.push(key);
        chains.set(path, key);
      }
      return key;
    };
    const scope: KeyScope = {
      hmac: async (req) => ops.sign(s, 'SHA256_HMAC', await chainKey(req.keyChain), req.data),
      verifyHmac: async (req) => req.mac.length === HMAC_BYTES && ops.verify(s, 'SHA256_HMAC', await chainKey(req.keyChain), req.data, req.mac),
      encryptWithKeyChain: async (req) => {
        const key = await chainKey(req.keyChain);
        const iv = randomBytes(GCM_IV_BYTES);
        return Buffer.concat([iv, await ops.encrypt(s, aesGcm(iv, req.aad), key, req.plaintext)]);
      },
      signWithWrappedKey: async (req) => signIndiciumData(s, await indiciumKey(req.wrappedKey, req.algorithm), req.algorithm, req.data),
      identitySign: (data) => ops.sign(s, 'ECDSA', k.identity, sha256(data)),
      many: async (calls) => {
        // keys first (each unwrapped once per scope), then every call in one trip
        const ivs: Array<Buffer | undefined> = [];
        const todo: Array<TokenCall | null> = [];
        for (const c of calls) {
          if ('verifyHmac' in c) {
            const r = c.verifyHmac;
            todo.push(r.mac.length === HMAC_BYTES ? ops.tokenCall('verify', 'SHA256_HMAC', await chainKey(r.keyChain), r.data, r.mac) : null);
          } else if ('signWithWrappedKey' in c) {
            const r = c.signWithWrappedKey;
            const key = await indiciumKey(r.wrappedKey, r.algorithm);
            todo.push(r.algorithm === 'ec-p256' ? ops.tokenCall('sign', 'ECDSA', key, sha256(r.data)) : ops.tokenCall('sign', 'SHA256_RSA_PKCS', key, r.data));
          } else if ('encryptWithKeyChain' in c) {
            const r = c.encryptWithKeyChain;
            const iv = randomBytes(GCM_IV_BYTES);
            ivs[todo.length] = iv;
            todo.push(ops.tokenCall('encrypt', aesGcm(iv, r.aad), await chainKey(r.keyChain), r.plaintext));
          } else todo.push(ops.tokenCall('sign', 'ECDSA', k.identity, sha256(c.identitySign)));
        }
        const sent = todo.filter((t): t is TokenCall => t !== null);
        const results = sent.length ? await ops.runCalls(s, sent) : [];
        let next = 0;
        return todo.map((t, i) => {
          if (t === null) return false; // a MAC of the wrong length
          const r = results[next++];
          if (r.error) {
            const e = tokenError(r);
            if (t.fn === 'verify' && ops.isSignatureNo(e)) return false;
            throw e;
          }
          if (t.fn === 'verify') return r.ok === true;
          const value = r.value!;
          return ivs[i] ? Buffer.concat([ivs[i]!, value]) : value;
        });
      },
    };
    try {
      return await fn(scope);
    } catch (e) {
      if (e instanceof VbiError || ckr(e) !== undefined) throw e;
      own = { error: e };
      throw vbiError('INTERNAL', 'key scope: the caller failed');
    } finally {
      for (const key of made) ops.destroyQuietly(key);
    }
  }).catch((e) => {
    if (own) throw own.error;
    throw e;
  });
}

/** Nested key scopes, each on its own session, as many as `max` while sessions are free. */
export function withSpareKeys<T>(m: ModuleLifecycle, max: number, fn: (scopes: KeyScope[]) => Promise<T>): Promise<T> {
  // each further scope is taken only while a session is free: acquire() then does not wait
  const nest = (got: KeyScope[]): Promise<T> =>
    got.length < max && m.session.pool.spare > 0 ? withKeys(m, (k) => nest([...got, k])) : fn(got);
  return nest([]);
}
