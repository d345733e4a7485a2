import * as graphene from 'graphene-pk11';
import { adaptTemplate, checkUnwrapped, profileOf } from './token-profile';

/**
 * Promise versions of the PKCS#11 calls pkcs11js runs on a worker thread, so one mechanism
 * call at most blocks the event loop (the *Init part). Buffers passed in stay referenced by
 * the closures until the callback runs (pkcs11js issue 121).
 */
function settle<T>(resolve: (v: T) => void, reject: (e: unknown) => void) {
  return (err: Error | null | undefined, value: T | null) => (err ? reject(err) : resolve(value as T));
}

export function sign(session: graphene.Session, mech: graphene.MechanismType, key: graphene.Key, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => session.createSign(mech, key).once(data, settle(resolve, reject)));
}

export function verify(session: graphene.Session, mech: graphene.MechanismType, key: graphene.Key, data: Buffer, signature: Buffer): Promise<boolean> {
  return new Promise((resolve, reject) => {
    session.createVerify(mech, key).once(data, signature, (err: Error | null, ok: boolean) => {
      // CKR_SIGNATURE_INVALID / CKR_SIGNATURE_LEN_RANGE are a "no", not a failure.
      if (err && /CKR_SIGNATURE_(INVALID|LEN_RANGE)/.test(err.message)) return resolve(false);
      if (err) return reject(err);
      resolve(ok);
    });
  });
}

export function encrypt(session: graphene.Session, mech: graphene.MechanismType, key: graphene.Key, data: Buffer): Promise<Buffer> {
  const out = Buffer.alloc(data.length + 64);
  return new Promise((resolve, reject) => session.createCipher(mech, key).once(data, out, settle(resolve, reject)));
}

export function decrypt(session: graphene.Session, mech: graphene.MechanismType, key: graphene.Key, data: Buffer): Promise<Buffer> {
  const out = Buffer.alloc(data.length + 64);
  return new Promise((resolve, reject) => session.createDecipher(mech, key).once(data, out, settle(resolve, reject)));
}

export function digest(session: graphene.Session, mech: graphene.MechanismType, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => session.createDigest(mech).once(data, settle(resolve, reject)));
}

export function wrapKey(session: graphene.Session, mech: graphene.MechanismType, wrappingKey: graphene.Key, key: graphene.Key): Promise<Buffer> {
  return new Promise((resolve, reject) => session.wrapKey(mech, wrappingKey, key, settle(resolve, reject)));
}

/**
 * C_UnwrapKey with the template adapted to the token's profile, then the unwrapped key's
 * CKA_SENSITIVE / CKA_EXTRACTABLE checked against what `template` asked (KEY_ATTRIBUTES_WEAK).
 */
export async function unwrapKey(session: graphene.Session, mech: graphene.MechanismType, unwrappingKey: graphene.Key, wrapped: Buffer, template: graphene.ITemplate): Promise<graphene.Key> {
  const profile = profileOf(session);
  const key = await new Promise<graphene.Key>((resolve, reject) =>
    session.unwrapKey(mech, unwrappingKey, wrapped, adaptTemplate(profile, template, 'unwrap'), settle(resolve, reject)));
  checkUnwrapped(key, template, () => session.slot.getToken().label.trim(), profile);
  return key;
}

export function generateKey(session: graphene.Session, mech: graphene.MechanismType, template: graphene.ITemplate): Promise<graphene.SecretKey> {
  const t = adaptTemplate(profileOf(session), template, 'generate');
  return new Promise((resolve, reject) => session.generateKey(mech, t, settle(resolve, reject)));
}

export function generateKeyPair(session: graphene.Session, mech: graphene.MechanismType, pub: graphene.ITemplate, priv: graphene.ITemplate): Promise<graphene.IKeyPair> {
  const profile = profileOf(session);
  const [p, q] = [adaptTemplate(profile, pub, 'generate'), adaptTemplate(profile, priv, 'generate')];
  return new Promise((resolve, reject) => session.generateKeyPair(mech, p, q, settle(resolve, reject)));
}

/** Destroys a session object, ignoring an already-invalid handle (used in `finally`). */
export function destroyQuietly(obj: graphene.SessionObject | undefined): void {
  if (!obj) return;
  try {
    obj.destroy();
  } catch {
    // the session may already be gone, which destroys its objects too
  }
}
