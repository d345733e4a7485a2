import { randomBytes } from 'node:crypto';
import * as graphene from 'graphene-pk11';
import { KeyRef } from './hsm-module';
import { sessionTemplate } from './key-templates';
import { aesGcm, GCM_IV_BYTES, keyWrapPad } from './mechanisms';
import * as ops from './async-ops';
import { KeyHandles } from './module-keys';
import type { ModuleLifecycle } from './module-lifecycle';

/**
 * Key chains (registration, operational protocol, sessions): client secrets kept wrapped, each
 * under the one before it, the first under the KEK; used by unwrapping the chain into session objects.
 */

/** HMAC-SHA256 output: request MACs and dynamic passwords. */
export const HMAC_BYTES = 32;

/** Unwraps `chain` starting under `parent` (the KEK for a whole chain); every object made goes to `made`. */
export async function unwrapChain(m: ModuleLifecycle, s: graphene.Session, parent: graphene.Key, chain: KeyRef[], made: graphene.Key[]): Promise<graphene.Key> {
  for (const ref of chain) {
    const t = ref.usage === 'wrap' ? sessionTemplate('chain-wrap') : ref.usage === 'hmac' ? sessionTemplate('chain-hmac') : sessionTemplate('chain-encrypt');
    const keyType = ref.usage === 'hmac' ? graphene.KeyType.GENERIC_SECRET : graphene.KeyType.AES;
    parent = await ops.unwrapKey(s, keyWrapPad(m.wrapMechanism), parent, ref.wrapped, { class: graphene.ObjectClass.SECRET_KEY, keyType, ...t });
    made.push(parent);
  }
  return parent;
}

/** Runs `fn` with the last key of `chain`; every key unwrapped for it is destroyed afterwards. */
export function withChain<T>(m: ModuleLifecycle, what: string, chain: KeyRef[], fn: (s: graphene.Session, key: graphene.Key, k: KeyHandles) => Promise<T>): Promise<T> {
  return m.run(what, async (s, k) => {
    const made: graphene.Key[] = [];
    try {
      return await fn(s, await unwrapChain(m, s, k.kek, chain, made), k);
    } finally {
      for (const key of made) ops.destroyQuietly(key);
    }
  });
}

export function generateWrappedSecretKey(m: ModuleLifecycle): Promise<Buffer> {
  return m.run('generate wrapped secret key', async (s, k) => {
    const key = await ops.generateKey(s, 'AES_KEY_GEN', {
      class: graphene.ObjectClass.SECRET_KEY,
      keyType: graphene.KeyType.AES,
      valueLen: 32,
      ...sessionTemplate('user-secret-generate'),
    });
    try {
      return await ops.wrapKey(s, keyWrapPad(m.wrapMechanism), k.kek, key);
    } finally {
      ops.destroyQuietly(key);
    }
  });
}

export function hmac(m: ModuleLifecycle, req: { keyChain: KeyRef[]; data: Buffer }): Promise<Buffer> {
  return withChain(m, 'hmac', req.keyChain, (s, key) => ops.sign(s, 'SHA256_HMAC', key, req.data));
}

export async function verifyHmac(m: ModuleLifecycle, req: { keyChain: KeyRef[]; data: Buffer; mac: Buffer }): Promise<boolean> {
  // a MAC of another length never verifies: answered here, the token never sees it
  if (req.mac.length !== HMAC_BYTES) return false;
  return withChain(m, 'verify hmac', req.keyChain, (s, key) => ops.verify(s, 'SHA256_HMAC', key, req.data, req.mac));
}

export function encryptWithKeyChain(m: ModuleLifecycle, req: { keyChain: KeyRef[]; plaintext: Buffer; aad: Buffer }): Promise<Buffer> {
  return withChain(m, 'encrypt with key chain', req.keyChain, async (s, key) => {
    const iv = randomBytes(GCM_IV_BYTES);
    return Buffer.concat([iv, await ops.encrypt(s, aesGcm(iv, req.aad), key, req.plaintext)]);
  });
}
