import { createPublicKey, randomBytes } from 'node:crypto';
import * as graphene from 'graphene-pk11';
import { vbiError } from '@vbi/core/errors';
import { KeyRef } from './hsm-module';
import { sessionTemplate } from './key-templates';
import { aesGcm, GCM_IV_BYTES, keyWrapPad, rsaOaep } from './mechanisms';
import { ckr, isDeviceError, isRecoverable } from './pkcs11-errors';
import * as ops from './async-ops';
import { transportPrivate } from './module-keys';
import { HMAC_BYTES, withChain } from './key-chains';
import type { ModuleLifecycle } from './module-lifecycle';

/**
 * Client secrets (HMK, password secret, session key): encrypted by the client to the module
 * transport key with RSA-OAEP, taken into a key chain or used once to verify an HMAC.
 */

/** Measured once per module: the transport key's modulus, and how long a wrapped 32-byte key is. */
const transportModulus = new WeakMap<ModuleLifecycle, number>();
const wrappedLength32 = new WeakMap<ModuleLifecycle, number>();

function unwrapClientSecret(m: ModuleLifecycle, s: graphene.Session, ciphertext: Buffer, usage: 'hmac' | 'encrypt', template: graphene.ITemplate): Promise<graphene.Key> {
  return ops.unwrapKey(s, rsaOaep(m.oaepHash), transportPrivate(s), ciphertext, {
    class: graphene.ObjectClass.SECRET_KEY,
    keyType: usage === 'hmac' ? graphene.KeyType.GENERIC_SECRET : graphene.KeyType.AES,
    ...template,
    ...(usage === 'hmac' ? { sign: true, verify: true } : { encrypt: true, decrypt: true }),
  }).catch((e) => {
    // The ciphertext is the client's: whatever the token says about unwrapping it (a failed OAEP
    // decoding — SoftHSM2 reports CKR_GENERAL_ERROR, HSMs the specific codes —, an empty or
    // oversized key, a template it will not build from those bytes) is the client's problem,
    // unless the session or the device failed.
    if (ckr(e) !== undefined && !isRecoverable(e) && !isDeviceError(e)) {
      throw vbiError('CLIENT_SECRET_INVALID', 'the encrypted client secret does not decrypt under the module transport key');
    }
    throw e;
  });
}

/** How long a 32-byte key is once wrapped with the configured mechanism: a throw-away session key, wrapped once. */
async function wrapped32(m: ModuleLifecycle, s: graphene.Session, wrapping: graphene.Key): Promise<number> {
  let length = wrappedLength32.get(m);
  if (length === undefined) {
    const probe = await ops.generateKey(s, 'AES_KEY_GEN', {
      class: graphene.ObjectClass.SECRET_KEY, keyType: graphene.KeyType.AES, valueLen: 32, token: false, private: true,
      sensitive: true, extractable: true, encrypt: true,
    });
    try {
      length = (await ops.wrapKey(s, keyWrapPad(m.wrapMechanism), wrapping, probe)).length;
      wrappedLength32.set(m, length);
    } finally {
      ops.destroyQuietly(probe);
    }
  }
  return length;
}

/** RSA-OAEP ciphertexts under the transport key are exactly as long as its modulus: checked before any token call. */
function assertTransportCiphertext(m: ModuleLifecycle, ciphertext: Buffer): void {
  if (ciphertext.length !== transportModulusBytes(m)) {
    throw vbiError('CLIENT_SECRET_INVALID', `an encrypted client secret is ${transportModulusBytes(m)} bytes (RSA-OAEP under the module transport key)`);
  }
}

function transportModulusBytes(m: ModuleLifecycle): number {
  let bytes = transportModulus.get(m);
  if (bytes === undefined) {
    bytes = (createPublicKey({ key: m.transportPublicKey(), format: 'der', type: 'spki' }).asymmetricKeyDetails?.modulusLength ?? 0) / 8;
    transportModulus.set(m, bytes);
  }
  return bytes;
}

export async function importClientSecret(m: ModuleLifecycle, req: { ciphertext: Buffer; usage: 'hmac' | 'encrypt'; under: KeyRef[] }): Promise<Buffer> {
  assertTransportCiphertext(m, req.ciphertext);
  return withChain(m, 'import client secret', req.under, async (s, parent) => {
    const secret = await unwrapClientSecret(m, s, req.ciphertext, req.usage, sessionTemplate('client-import'));
    try {
      const refuse = (e: unknown) => {
        if (ckr(e) !== undefined && !isRecoverable(e) && !isDeviceError(e)) throw vbiError('CLIENT_SECRET_INVALID', 'client secrets are 32 bytes');
        throw e;
      };
      // Client secrets (HMK, password secret, session key) are 32 bytes. Not every token refuses
      // a short HMAC key, and some (SoftHSM2) report CKA_VALUE_LEN 0 on unwrapped keys, so:
      //  - a CKA_VALUE_LEN the token reports must be 32;
      //  - else the secret must also unwrap as an AES key (16, 24 or 32 bytes by definition) —
      //    for 'encrypt' it already is one —, and its wrapped length must be a 32-byte key's
      //    (AES key wrap with padding: 16 and 24 bytes wrap shorter).
      const valueLen = Number(secret.getAttribute({ valueLen: null }).valueLen ?? 0);
      if (valueLen > 0 && valueLen !== 32) throw vbiError('CLIENT_SECRET_INVALID', 'client secrets are 32 bytes');
      if (valueLen === 0 && req.usage === 'hmac') {
        const asAes = await unwrapClientSecret(m, s, req.ciphertext, 'encrypt', sessionTemplate('chain-encrypt')).catch(refuse);
        ops.destroyQuietly(asAes);
      }
      const trial = req.usage === 'hmac'
        ? ops.sign(s, 'SHA256_HMAC', secret, Buffer.alloc(1))
        : ops.encrypt(s, aesGcm(randomBytes(GCM_IV_BYTES), Buffer.alloc(0)), secret, Buffer.alloc(1));
      await trial.catch(refuse);
      const wrapped = await ops.wrapKey(s, keyWrapPad(m.wrapMechanism), parent, secret);
      if (wrapped.length !== (await wrapped32(m, s, parent))) throw vbiError('CLIENT_SECRET_INVALID', 'client secrets are 32 bytes');
      return wrapped;
    } finally {
      ops.destroyQuietly(secret);
    }
  });
}

export async function verifyHmacWithClientSecret(m: ModuleLifecycle, req: { ciphertext: Buffer; data: Buffer; mac: Buffer }): Promise<boolean> {
  assertTransportCiphertext(m, req.ciphertext);
  if (req.mac.length !== HMAC_BYTES) return false;
  return m.run('verify client secret', async (s) => {
    const secret = await unwrapClientSecret(m, s, req.ciphertext, 'hmac', sessionTemplate('chain-hmac'));
    try {
      return await ops.verify(s, 'SHA256_HMAC', secret, req.data, req.mac);
    } finally {
      ops.destroyQuietly(secret);
    }
  });
}
