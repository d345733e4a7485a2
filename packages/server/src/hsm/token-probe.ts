// Over 300 lines: one probe, probeToken: a list of short checks of what the token does, which reads best as one list.
import { constants, createHmac, createPublicKey, publicEncrypt, randomBytes } from 'node:crypto';
import * as graphene from 'graphene-pk11';
import * as pkcs11 from 'pkcs11js';
import * as ops from './async-ops';
import { ckr } from './pkcs11-errors';
import { TokenProfile } from './token-profile';
import { aesGcm, des3Cbc, GCM_IV_BYTES, keyWrapPad, macMechanism, P256_PARAMS, PackageSuite, rsaOaep } from './mechanisms';
import { secretKeyTemplate, SESSION_KEY_TEMPLATES, sessionTemplate } from './key-templates';
import { rsaPublicKeySpki } from './public-keys';
import { DATA_APPLICATION } from './data-objects';

/**
 * The token probe: does this token do everything the service needs, the way the profile says?
 * `npm run ceremony -- probe` runs it on any token; the service runs it at start on each module
 * token (key entry, packages/server/src/hsm/module-lifecycle.ts) and refuses a token that fails a required check. Every check
 * runs in a session of its own, on session objects destroyed with it (one private CKO_DATA token
 * object is created and destroyed), and says the exact CKR_ code of what failed.
 */
export interface ProbeCheck {
  name: string;
  ok: boolean;
  /** A failed required check makes the token unusable; an optional one disables a feature. */
  required: boolean;
  detail: string;
  ckr?: string;
}

export interface ProbeReport {
  profile: string;
  token: { label: string; manufacturerID: string; model: string; serial: string; library: string; minPinLen: number; maxPinLen: number };
  checks: ProbeCheck[];
  /** Every required check passed. */
  ok: boolean;
}

export interface ProbeOptions {
  profile: TokenProfile;
  suite: PackageSuite;
  wrapMechanism: number;
  oaepHash: 'sha1' | 'sha256';
  /**
   * The module transport key pair, found by the module (service start); without it the probe
   * generates an RSA-2048 session pair for the RSA-OAEP check (ceremony probe on an empty token).
   */
  transport?: { privateKey: graphene.PrivateKey; publicKey: graphene.PublicKey };
}

const CKR_NAMES = new Map<number, string>(
  Object.entries(pkcs11).filter(([k, v]) => k.startsWith('CKR_') && typeof v === 'number').map(([k, v]) => [v as number, k]),
);
const CKM_NAMES = new Map<number, string>(
  Object.entries(pkcs11).filter(([k, v]) => k.startsWith('CKM_') && typeof v === 'number').map(([k, v]) => [v as number, k]),
);

/** `CKR_NAME (0xNN)` of a PKCS#11 error, or undefined. */
export function ckrName(e: unknown): string | undefined {
  const c = ckr(e);
  return c === undefined ? undefined : `${CKR_NAMES.get(c) ?? 'CKR_?'} (0x${c.toString(16)})`;
}

function mechName(m: number): string {
  return CKM_NAMES.get(m) ?? `0x${m.toString(16)}`;
}

/** The mechanisms the service uses: [mechanism, flags it needs, what for, required]. */
function neededMechanisms(o: ProbeOptions): Array<[number, number, string, boolean]> {
  const F = pkcs11;
  const list: Array<[number, number, string, boolean]> = [
    [F.CKM_AES_KEY_GEN, F.CKF_GENERATE, 'package and user-secret keys', true],
    [o.wrapMechanism, F.CKF_WRAP | F.CKF_UNWRAP, 'AES key wrap with padding (profile wrapMechanism)', true],
    [F.CKM_EC_KEY_PAIR_GEN, F.CKF_GENERATE_KEY_PAIR, 'identity and indicium keys', true],
    [F.CKM_ECDSA, F.CKF_SIGN | F.CKF_VERIFY, 'identity and indicium signatures', true],
    [F.CKM_SHA256_HMAC, F.CKF_SIGN | F.CKF_VERIFY, 'request MACs and dynamic passwords', true],
    [F.CKM_SHA256, F.CKF_DIGEST, 'self-test', true],
    [F.CKM_RSA_PKCS_KEY_PAIR_GEN, F.CKF_GENERATE_KEY_PAIR, 'transport key', true],
    [F.CKM_RSA_PKCS_OAEP, F.CKF_UNWRAP, 'client secrets and key cloning', true],
    [F.CKM_SHA256_RSA_PKCS, F.CKF_SIGN | F.CKF_VERIFY, 'RSA-2048 indicium keys (optional)', false],
  ];
  if (o.suite === 'aes') {
    list.push([F.CKM_AES_GCM, F.CKF_ENCRYPT | F.CKF_DECRYPT, 'package secrets (suite aes)', true]);
    list.push([F.CKM_AES_CMAC, F.CKF_SIGN | F.CKF_VERIFY, 'package and checkpoint MACs (suite aes)', true]);
  } else {
    list.push([F.CKM_DES3_KEY_GEN, F.CKF_GENERATE, 'package keys (suite legacy-3des)', true]);
    list.push([F.CKM_DES3_CBC_PAD, F.CKF_ENCRYPT | F.CKF_DECRYPT, 'package secrets (suite legacy-3des)', true]);
    list.push([F.CKM_DES3_CMAC, F.CKF_SIGN | F.CKF_VERIFY, 'package and checkpoint MACs (suite legacy-3des)', true]);
  }
  return list;
}

type CheckFn = (s: graphene.Session) => Promise<string> | string;

/**
 * Runs every check on `slot`. The caller has logged the token in as the service's user (login
 * state is token-wide); the probe opens its own session and closes it, which destroys whatever
 * session objects a failed check left behind.
 */
export async function probeToken(slot: graphene.Slot, o: ProbeOptions): Promise<ProbeReport> {
  const info = slot.getToken();
  const token = {
    label: info.label.trim(), manufacturerID: info.manufacturerID.trim(), model: info.model.trim(), serial: info.serialNumber.trim(),
    library: slot.module.libraryDescription.trim(), minPinLen: info.minPinLen, maxPinLen: info.maxPinLen,
  };
  const checks: ProbeCheck[] = [];
  const s = slot.open(graphene.SessionFlag.SERIAL_SESSION | graphene.SessionFlag.RW_SESSION);
  const run = async (name: string, required: boolean, fn: CheckFn) => {
    try {
      checks.push({ name, required, ok: true, detail: await fn(s) });
    } catch (e) {
      const code = ckrName(e);
      checks.push({ name, required, ok: false, detail: e instanceof Error ? e.message : String(e), ...(code ? { ckr: code } : {}) });
    }
  };
  try {
    await run('profile matches the token', true, () => {
      const want = o.profile.match.manufacturerID;
      if (!want) return `profile '${o.profile.name}' names no manufacturer`;
      const re = new RegExp(want);
      const libMfr = slot.module.manufacturerID.trim();
      if (!re.test(token.manufacturerID) && !re.test(libMfr)) {
        throw new Error(`profile '${o.profile.name}' is for manufacturer /${want}/; the token says '${token.manufacturerID}', the library '${libMfr}'`);
      }
      return `manufacturer '${token.manufacturerID}'`;
    });
    await run('module serial', true, () => {
      if (o.profile.serialSource === 'identity-key') return 'derived from the module identity key (profile serialSource identity-key)';
      if (!token.serial) throw new Error('the token reports a blank serial number: use a profile with serialSource identity-key');
      const slots = slot.module.getSlots(true);
      for (let i = 0; i < slots.length; i++) {
        const other = slots.items(i);
        if (other.handle.equals(slot.handle)) continue;
        const t = other.getToken();
        if (t.flags & graphene.TokenFlag.TOKEN_INITIALIZED && t.serialNumber.trim() === token.serial) {
          throw new Error(`token '${t.label.trim()}' reports the same serial ${token.serial}: use a profile with serialSource identity-key`);
        }
      }
      return `token serial ${token.serial}, unique among this library's tokens`;
    });
    await run('mechanisms', true, () => checkMechanisms(slot, o, true));
    await run('mechanisms (optional)', false, () => checkMechanisms(slot, o, false));
    await run('long-term key attributes', true, (x) => longTermAttributes(x, o));
    await run('CKA_WRAP_WITH_TRUSTED', true, (x) => wrapWithTrusted(x, o));
    await run(`package suite ${o.suite}`, true, (x) => suiteRoundTrip(x, o));
    await run('indicium key EC P-256: generate, wrap, unwrap, sign', true, (x) => indiciumKey(x, o, 'ec-p256'));
    await run('indicium key RSA-2048: generate, wrap, unwrap, sign', false, (x) => indiciumKey(x, o, 'rsa-2048'));
    await run(`client secret by RSA-OAEP (${o.oaepHash}), HMAC-SHA256, re-wrapped`, true, (x) => clientSecret(x, o));
    await run('short HMAC keys', false, (x) => shortHmacKeys(x, o));
    await run('private data objects (checkpoint ring)', true, (x) => dataObjects(x));
    await run('clear secret key import (self-tests)', o.profile.clearKeyImport, (x) => clearKeyImport(x, o));
  } finally {
    try { s.close(); } catch { /* closed */ }
  }
  return { profile: o.profile.name, token, checks, ok: checks.every((c) => c.ok || !c.required) };
}

function checkMechanisms(slot: graphene.Slot, o: ProbeOptions, required: boolean): string {
  const have = new Set<number>(slot.lib.C_GetMechanismList(slot.handle) as number[]);
  const missing: string[] = [];
  const seen: string[] = [];
  for (const [mech, flags, why, req] of neededMechanisms(o)) {
    if (req !== required) continue;
    if (!have.has(mech)) {
      missing.push(`${mechName(mech)} (${why}): not offered`);
      continue;
    }
    const got = slot.lib.C_GetMechanismInfo(slot.handle, mech).flags;
    if ((got & flags) !== flags) missing.push(`${mechName(mech)} (${why}): flags 0x${got.toString(16)} lack 0x${(flags & ~got).toString(16)}`);
    else seen.push(mechName(mech));
  }
  if (missing.length) throw new Error(missing.join('; '));
  return seen.join(', ');
}

function destroyAll(...objs: Array<graphene.SessionObject | undefined>): void {
  for (const o of objs) ops.destroyQuietly(o);
}

/** A session AES key made with the package KEK's template: do the attributes stick? */
async function longTermAttributes(s: graphene.Session, o: ProbeOptions): Promise<string> {
  const t = { ...secretKeyTemplate('package-kek', o.suite), token: false, label: 'vbi.probe.kek' };
  const key = await ops.generateKey(s, 'AES_KEY_GEN', t);
  // CKA_DESTROYABLE=false may keep this session object until the probe's session closes
  const names = ['sensitive', 'extractable', 'wrapWithTrusted', 'modifiable', 'copyable', 'destroyable'] as const;
  const wrong: string[] = [];
  const read: string[] = [];
  for (const n of names) {
    if (!(n in t) || o.profile.omitAttributes.includes(n)) continue;
    const want = (t as Record<string, unknown>)[n];
    let got: unknown;
    try {
      got = key.getAttribute(n);
    } catch (e) {
      wrong.push(`CKA ${n} unreadable: ${ckrName(e) ?? (e as Error).message}`);
      continue;
    }
    if (got !== want) wrong.push(`${n}=${String(got)} where the template asks ${String(want)}`);
    else read.push(`${n}=${String(got)}`);
  }
  ops.destroyQuietly(key);
  if (wrong.length) throw new Error(`the token does not keep the long-term key template: ${wrong.join('; ')}`);
  const omitted = o.profile.omitAttributes.length ? `; left out by the profile: ${o.profile.omitAttributes.join(', ')}` : '';
  return read.join(', ') + omitted;
}

/** An extractable key with CKA_WRAP_WITH_TRUSTED must not wrap under an untrusted key. */
async function wrapWithTrusted(s: graphene.Session, o: ProbeOptions): Promise<string> {
  const guarded = await ops.generateKey(s, 'AES_KEY_GEN', {
    class: graphene.ObjectClass.SECRET_KEY, keyType: graphene.KeyType.AES, valueLen: 32, token: false, private: true,
    sensitive: true, extractable: true, wrapWithTrusted: true, label: 'vbi.probe.guarded',
  });
  const wrapping = await ops.generateKey(s, 'AES_KEY_GEN', {
    class: graphene.ObjectClass.SECRET_KEY, keyType: graphene.KeyType.AES, valueLen: 32, token: false, private: true,
    sensitive: true, extractable: false, wrap: true, unwrap: true, label: 'vbi.probe.untrusted',
  });
  try {
    let refused: string | undefined;
    try {
      await ops.wrapKey(s, keyWrapPad(o.wrapMechanism), wrapping, guarded);
    } catch (e) {
      refused = ckrName(e) ?? (e as Error).message;
    }
    if (refused) return `wrapping under an untrusted key refused: ${refused}`;
    if (o.profile.sharedKeysExtractable) {
      throw new Error('the token wrapped a CKA_WRAP_WITH_TRUSTED key under an untrusted key: the extractable package keys could be exported by the service login (a profile for this token needs sharedKeysExtractable false)');
    }
    return 'not enforced; the profile generates the package keys non-extractable (sharedKeysExtractable false)';
  } finally {
    destroyAll(guarded, wrapping);
  }
}

async function suiteRoundTrip(s: graphene.Session, o: ProbeOptions): Promise<string> {
  const aes = o.suite === 'aes';
  const enc = await ops.generateKey(s, aes ? 'AES_KEY_GEN' : 'DES3_KEY_GEN', {
    class: graphene.ObjectClass.SECRET_KEY, keyType: aes ? graphene.KeyType.AES : graphene.KeyType.DES3, ...(aes ? { valueLen: 32 } : {}),
    token: false, private: true, sensitive: true, extractable: false, encrypt: true, decrypt: true, sign: true, verify: true, label: 'vbi.probe.suite',
  });
  try {
    const data = randomBytes(40);
    const iv = randomBytes(aes ? GCM_IV_BYTES : 8);
    const aad = Buffer.from('vbi probe');
    const mech = () => (aes ? aesGcm(iv, aad) : des3Cbc(iv));
    const ct = await ops.encrypt(s, mech(), enc, data);
    if (!(await ops.decrypt(s, mech(), enc, ct)).equals(data)) throw new Error('decrypt(encrypt(x)) != x');
    const mac = await ops.sign(s, macMechanism(o.suite), enc, data);
    if (!(await ops.verify(s, macMechanism(o.suite), enc, data, mac))) throw new Error('MAC does not verify');
    const flipped = Buffer.from(data);
    flipped[0] ^= 1;
    if (await ops.verify(s, macMechanism(o.suite), enc, flipped, mac)) throw new Error('MAC verifies over altered data');
    return aes ? 'AES-256-GCM round trip, AES-CMAC sign/verify' : '3DES-CBC-PAD round trip, DES3-CMAC sign/verify';
  } finally {
    destroyAll(enc);
  }
}

async function sessionKek(s: graphene.Session): Promise<graphene.SecretKey> {
  return ops.generateKey(s, 'AES_KEY_GEN', {
    class: graphene.ObjectClass.SECRET_KEY, keyType: graphene.KeyType.AES, valueLen: 32, token: false, private: true,
    sensitive: true, extractable: false, wrap: true, unwrap: true, label: 'vbi.probe.kek2',
  });
}

/** What a meter's indicium key goes through: generated, wrapped under a KEK, unwrapped, used. */
async function indiciumKey(s: graphene.Session, o: ProbeOptions, alg: 'ec-p256' | 'rsa-2048'): Promise<string> {
  const ec = alg === 'ec-p256';
  const t = SESSION_KEY_TEMPLATES['indicium-generate'];
  const kek = await sessionKek(s);
  const kp = await ops.generateKeyPair(s, ec ? 'EC_KEY_PAIR_GEN' : 'RSA_PKCS_KEY_PAIR_GEN',
    ec ? { keyType: graphene.KeyType.EC, paramsEC: P256_PARAMS, ...t.publicAttributes }
      : { keyType: graphene.KeyType.RSA, modulusBits: 2048, publicExponent: Buffer.from([1, 0, 1]), ...t.publicAttributes },
    { keyType: ec ? graphene.KeyType.EC : graphene.KeyType.RSA, ...t.privateAttributes });
  let unwrapped: graphene.Key | undefined;
  try {
    const wrapped = await ops.wrapKey(s, keyWrapPad(o.wrapMechanism), kek, kp.privateKey);
    unwrapped = await ops.unwrapKey(s, keyWrapPad(o.wrapMechanism), kek, wrapped, {
      class: graphene.ObjectClass.PRIVATE_KEY, keyType: ec ? graphene.KeyType.EC : graphene.KeyType.RSA, ...sessionTemplate('indicium-unwrap'),
    });
    const data = randomBytes(32);
    const mech = ec ? 'ECDSA' : 'SHA256_RSA_PKCS';
    const sig = await ops.sign(s, mech, unwrapped, data);
    if (!(await ops.verify(s, mech, kp.publicKey, data, sig))) throw new Error('the unwrapped key signs what the generated public key does not verify');
    return `wrapped ${wrapped.length} bytes; unwrapped key sensitive and not extractable; signature verifies`;
  } finally {
    destroyAll(kek, kp.privateKey, kp.publicKey, unwrapped);
  }
}

async function transportPair(s: graphene.Session, o: ProbeOptions, made: graphene.SessionObject[]): Promise<{ privateKey: graphene.PrivateKey; publicKey: graphene.PublicKey }> {
  if (o.transport) return o.transport;
  const kp = await ops.generateKeyPair(s, 'RSA_PKCS_KEY_PAIR_GEN',
    { keyType: graphene.KeyType.RSA, token: false, private: false, modulusBits: 2048, publicExponent: Buffer.from([1, 0, 1]), encrypt: true, wrap: true, verify: false },
    { keyType: graphene.KeyType.RSA, token: false, private: true, sensitive: true, extractable: false, decrypt: true, unwrap: true, sign: false });
  made.push(kp.privateKey, kp.publicKey);
  return { privateKey: kp.privateKey as graphene.PrivateKey, publicKey: kp.publicKey as graphene.PublicKey };
}

function encryptTo(pub: graphene.PublicKey, oaepHash: 'sha1' | 'sha256', secret: Buffer): Buffer {
  const key = createPublicKey({ key: rsaPublicKeySpki(pub), format: 'der', type: 'spki' });
  return publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash }, secret);
}

/**
 * Registration's path: a 32-byte secret encrypted host-side to the transport key, unwrapped as a
 * generic secret with the client-import template, used for HMAC-SHA256 (compared with the host's
 * HMAC over the known secret) and wrapped under a user-secrets key.
 */
async function clientSecret(s: graphene.Session, o: ProbeOptions): Promise<string> {
  const made: graphene.SessionObject[] = [];
  try {
    const pair = await transportPair(s, o, made);
    const secret = randomBytes(32);
    const key = await ops.unwrapKey(s, rsaOaep(o.oaepHash), pair.privateKey, encryptTo(pair.publicKey, o.oaepHash, secret), {
      class: graphene.ObjectClass.SECRET_KEY, keyType: graphene.KeyType.GENERIC_SECRET, ...sessionTemplate('client-import'), sign: true, verify: true,
    });
    made.push(key);
    const data = Buffer.from('vbi probe hmac');
    const mac = await ops.sign(s, 'SHA256_HMAC', key, data);
    if (!mac.equals(createHmac('sha256', secret).update(data).digest())) throw new Error('HMAC-SHA256 under the unwrapped secret differs from the host HMAC over the same secret');
    const userSecrets = await ops.generateKey(s, 'AES_KEY_GEN', {
      class: graphene.ObjectClass.SECRET_KEY, keyType: graphene.KeyType.AES, valueLen: 32, ...sessionTemplate('user-secret-generate'), label: 'vbi.probe.user',
    });
    made.push(userSecrets);
    const kek = await sessionKek(s);
    made.push(kek);
    const wrappedUser = await ops.wrapKey(s, keyWrapPad(o.wrapMechanism), kek, userSecrets);
    const chain = await ops.unwrapKey(s, keyWrapPad(o.wrapMechanism), kek, wrappedUser, { class: graphene.ObjectClass.SECRET_KEY, keyType: graphene.KeyType.AES, ...sessionTemplate('chain-wrap') });
    made.push(chain);
    const wrapped = await ops.wrapKey(s, keyWrapPad(o.wrapMechanism), chain, key);
    const hmacKey = await ops.unwrapKey(s, keyWrapPad(o.wrapMechanism), chain, wrapped, { class: graphene.ObjectClass.SECRET_KEY, keyType: graphene.KeyType.GENERIC_SECRET, ...sessionTemplate('chain-hmac') });
    made.push(hmacKey);
    if (!(await ops.verify(s, 'SHA256_HMAC', hmacKey, data, mac))) throw new Error('the re-wrapped secret does not verify its own HMAC');
    return `${o.transport ? 'module transport key' : 'RSA-2048 session pair'}; HMAC matches the host's; user-secrets chain wrap/unwrap`;
  } finally {
    destroyAll(...made);
  }
}

/** Informational: whether the token itself refuses HMAC keys shorter than 32 bytes. */
async function shortHmacKeys(s: graphene.Session, o: ProbeOptions): Promise<string> {
  const made: graphene.SessionObject[] = [];
  try {
    const pair = await transportPair(s, o, made);
    try {
      const key = await ops.unwrapKey(s, rsaOaep(o.oaepHash), pair.privateKey, encryptTo(pair.publicKey, o.oaepHash, randomBytes(20)), {
        class: graphene.ObjectClass.SECRET_KEY, keyType: graphene.KeyType.GENERIC_SECRET, ...sessionTemplate('chain-hmac'),
      });
      made.push(key);
      await ops.sign(s, 'SHA256_HMAC', key, Buffer.from('x'));
    } catch (e) {
      const code = ckrName(e);
      if (!code) throw e;
      return `the token refuses a 20-byte HMAC key (${code}); the service checks the length itself too`;
    }
    return 'the token accepts a 20-byte HMAC key; the service refuses client secrets other than 32 bytes itself';
  } finally {
    destroyAll(...made);
  }
}

async function dataObjects(s: graphene.Session): Promise<string> {
  const label = `vbi.probe.${randomBytes(6).toString('hex')}`;
  const value = randomBytes(300);
  s.create({ class: graphene.ObjectClass.DATA, token: true, private: true, modifiable: false, application: DATA_APPLICATION, label, value });
  try {
    const found = s.find({ class: graphene.ObjectClass.DATA, application: DATA_APPLICATION, label });
    if (found.length !== 1) throw new Error(`created one data object, found ${found.length}`);
    const got = found.items(0).getAttribute({ value: null, private: null });
    if (!Buffer.from(got.value as Buffer).equals(value)) throw new Error('the data object reads back a different value');
    if (got.private !== true) throw new Error('the data object is not private');
  } finally {
    s.destroy({ class: graphene.ObjectClass.DATA, application: DATA_APPLICATION, label });
  }
  if (s.find({ class: graphene.ObjectClass.DATA, application: DATA_APPLICATION, label }).length) throw new Error('the data object survives C_DestroyObject');
  return 'private CKO_DATA token object created, found by application and label, read, destroyed';
}

async function clearKeyImport(s: graphene.Session, o: ProbeOptions): Promise<string> {
  if (!o.profile.clearKeyImport) return 'not tried: the profile keeps clear keys out (self-tests unwrap their known keys)';
  const key = s.create({
    class: graphene.ObjectClass.SECRET_KEY, keyType: graphene.KeyType.AES, token: false, private: false, sensitive: true,
    value: randomBytes(32), encrypt: true, label: 'vbi.probe.clear',
  });
  ops.destroyQuietly(key);
  return 'C_CreateObject of a secret session key accepted';
}
