import * as graphene from 'graphene-pk11';
import { adaptTemplate, checkUnwrapped, profileOf } from './token-profile';
import { threadsOf, TokenCall, TokenResult } from './token-threads';

/**
 * Promise versions of the PKCS#11 calls. Sign, verify, encrypt and decrypt run whole (the *Init
 * and the call) on a token thread (packages/server/src/hsm/token-threads.ts), on the session the caller holds;
 * the others are pkcs11js's asynchronous calls, which run on a worker thread but for their
 * *Init part. Buffers passed in stay referenced by the closures until the callback runs (pkcs11js
 * issue 121).
 */
function settle<T>(resolve: (v: T) => void, reject: (e: unknown) => void) {
  return (err: Error | null | undefined, value: T | null) => (err ? reject(err) : resolve(value as T));
}

function onThread(session: graphene.Session, c: TokenCall): Promise<TokenResult> {
  return threadsOf(session).call(session.handle, c);
}

/** A mechanism call for runCalls. */
export function tokenCall(fn: 'sign' | 'verify' | 'encrypt', mech: graphene.MechanismType, key: graphene.Key, data: Buffer, signature?: Buffer): TokenCall {
  return { fn, mechanism: graphene.Mechanism.create(mech), key: key.handle, data, signature };
}

/** `calls` in one trip to a token thread, one after the other on `session`; every call's result, errors included. */
export function runCalls(session: graphene.Session, calls: TokenCall[]): Promise<TokenResult[]> {
  return threadsOf(session).run(session.handle, calls);
}

/** A verification's "no" (CKR_SIGNATURE_INVALID / CKR_SIGNATURE_LEN_RANGE), which is not a failure. */
export function isSignatureNo(e: unknown): boolean {
  return /CKR_SIGNATURE_(INVALID|LEN_RANGE)/.test((e as Error)?.message ?? '');
}

export async function sign(session: graphene.Session, mech: graphene.MechanismType, key: graphene.Key, data: Buffer): Promise<Buffer> {
  return (await onThread(session, { fn: 'sign', mechanism: graphene.Mechanism.create(mech), key: key.handle, data })).value!;
}

export async function verify(session: graphene.Session, mech: graphene.MechanismType, key: graphene.Key, data: Buffer, signature: Buffer): Promise<boolean> {
  try {
    return (await onThread(session, { fn: 'verify', mechanism: graphene.Mechanism.create(mech), key: key.handle, data, signature })).ok === true;
  } catch (e) {
    if (isSignatureNo(e)) return false;
    throw e;
  }
}

export async function encrypt(session: graphene.Session, mech: graphene.MechanismType, key: graphene.Key, data: Buffer): Promise<Buffer> {
  return (await onThread(session, { fn: 'encrypt', mechanism: graphene.Mechanism.create(mech), key: key.handle, data })).value!;
}

export async function decrypt(session: graphene.Session, mech: graphene.MechanismType, key: graphene.Key, data: Buffer): Promise<Buffer> {
  return (await onThread(session, { fn: 'decrypt', mechanism: graphene.Mechanism.create(mech), key: key.handle, data })).value!;
}

/** C_CreateObject of a token object (a file write on SoftHSM2: off the event loop). */
export async function createObject(session: graphene.Session, template: graphene.ITemplate): Promise<void> {
  await onThread(session, { fn: 'create', template: graphene.Template.toPkcs11(template) });
}

/** Destroys every object that has `template`'s attributes. */
export async function destroyFound(session: graphene.Session, template: graphene.ITemplate): Promise<void> {
  await onThread(session, { fn: 'destroy-found', template: graphene.Template.toPkcs11(template) });
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
