import * as graphene from 'graphene-pk11';
import { vbiError } from '@vbi/core/errors';
import { IndiciumKeyAlgorithm } from './hsm-module';
import { SESSION_KEY_TEMPLATES, sessionTemplate } from './key-templates';
import { keyWrapPad, P256_PARAMS } from './mechanisms';
import { ecPublicKeySpki, rsaPublicKeySpki } from './public-keys';
import * as ops from './async-ops';
import { KeyHandles, sha256 } from './module-keys';
import type { ModuleLifecycle } from './module-lifecycle';

/** Indicium keys: generated in the token, kept by the service only wrapped under the KEK. */

/** An optional algorithm whose self-test failed is refused (ALGORITHM_DISABLED). */
export function assertEnabled(m: ModuleLifecycle, algorithm: IndiciumKeyAlgorithm): void {
  if (algorithm === 'rsa-2048' && m.selfTestReport?.disabled.includes('rsa-2048')) {
    throw vbiError('ALGORITHM_DISABLED', `module '${m.tokenLabel}': RSA-2048 indicium keys are disabled by the self-test`);
  }
}

/** EC: raw r||s ECDSA over SHA-256(data); RSA: PKCS#1 v1.5 with SHA-256. */
export function signIndiciumData(s: graphene.Session, key: graphene.Key, algorithm: IndiciumKeyAlgorithm, data: Buffer): Promise<Buffer> {
  return algorithm === 'ec-p256' ? ops.sign(s, 'ECDSA', key, sha256(data)) : ops.sign(s, 'SHA256_RSA_PKCS', key, data);
}

export async function generateIndiciumKey(m: ModuleLifecycle, req: { algorithm: IndiciumKeyAlgorithm }): Promise<{ wrappedKey: Buffer; publicKeySpki: Buffer }> {
  assertEnabled(m, req.algorithm);
  return m.run('generate indicium key', async (s, k) => {
    const t = SESSION_KEY_TEMPLATES['indicium-generate'];
    const ec = req.algorithm === 'ec-p256';
    const kp = await ops.generateKeyPair(
      s,
      ec ? 'EC_KEY_PAIR_GEN' : 'RSA_PKCS_KEY_PAIR_GEN',
      ec
        ? { keyType: graphene.KeyType.EC, paramsEC: P256_PARAMS, ...t.publicAttributes }
        : { keyType: graphene.KeyType.RSA, modulusBits: 2048, publicExponent: Buffer.from([1, 0, 1]), ...t.publicAttributes },
      { keyType: ec ? graphene.KeyType.EC : graphene.KeyType.RSA, ...t.privateAttributes, ...m.opts.indiciumTemplateFault?.() },
    );
    try {
      const wrappedKey = await ops.wrapKey(s, keyWrapPad(m.wrapMechanism), k.kek, kp.privateKey);
      const publicKeySpki = ec ? ecPublicKeySpki(kp.publicKey) : rsaPublicKeySpki(kp.publicKey);
      return { wrappedKey, publicKeySpki };
    } finally {
      ops.destroyQuietly(kp.privateKey);
      ops.destroyQuietly(kp.publicKey);
    }
  });
}

export async function signWithWrappedKey(m: ModuleLifecycle, req: { wrappedKey: Buffer; algorithm: IndiciumKeyAlgorithm; data: Buffer }): Promise<Buffer> {
  assertEnabled(m, req.algorithm);
  return m.run('sign with wrapped key', async (s, k) => {
    const key = await unwrapIndiciumKey(m, s, k, req.wrappedKey, req.algorithm);
    try {
      return await signIndiciumData(s, key, req.algorithm, req.data);
    } finally {
      ops.destroyQuietly(key);
    }
  });
}

export function unwrapIndiciumKey(m: ModuleLifecycle, s: graphene.Session, k: KeyHandles, wrapped: Buffer, algorithm: IndiciumKeyAlgorithm): Promise<graphene.Key> {
  return ops.unwrapKey(s, keyWrapPad(m.wrapMechanism), k.kek, wrapped, {
    class: graphene.ObjectClass.PRIVATE_KEY,
    keyType: algorithm === 'ec-p256' ? graphene.KeyType.EC : graphene.KeyType.RSA,
    ...sessionTemplate('indicium-unwrap'),
  });
}
