// Over 300 lines: the token-side steps of the key ceremony (init, take ownership, generate, clone, report), in the order an officer runs them.
import { createHash } from 'node:crypto';
import * as graphene from 'graphene-pk11';
import * as pkcs11 from 'pkcs11js';
import { vbiError } from '@vbi/core/errors';
import { LibraryHandle, findFreeSlot, findSlotByLabel } from './pkcs11-library';
import {
  Attributes, KEY_ROLES, KeyRole, SESSION_KEY_TEMPLATES, SHARED_ROLES, isSecretRole, pairTemplates, roleAttributes, roleLabel, roleSpec,
  secretKeyGenMechanism, secretKeyTemplate, secretKeyUnwrapTemplate,
} from './key-templates';
import { P256_PARAMS, PackageSuite, keyWrapPad, macMechanism, rsaOaep } from './mechanisms';
import { ckr, toVbiError } from './pkcs11-errors';
import { login, withSession } from './token-session';
import { ecPublicKeySpki, rsaPublicKeySpki } from './public-keys';
import { DATA_APPLICATION } from './data-objects';
import * as ops from './async-ops';
import { TokenProfile, checkPin, profileOf, serialFromIdentity } from './token-profile';

/**
 * Crypto-Officer operations (the key ceremony). Kept apart from CryptoModule, which the
 * service uses in the Crypto-User role and which has no way to create or destroy a long-term
 * key. Every step that changes keys first proves the Security Officer's PIN with an SO login.
 */

export interface TokenRef {
  library: LibraryHandle;
  label: string;
}

export interface KeyReport {
  role: KeyRole | null;
  label: string;
  class: 'secret' | 'private' | 'public';
  keyType: string;
  /** Key check value of a secret key (see functionalKcv). */
  kcv?: string;
  /** SHA-256 of the SubjectPublicKeyInfo, first 8 bytes, for key pairs. */
  spkiSha256?: string;
  attributes: Attributes;
  weaknesses: string[];
}

/** Proves the officer holds the SO PIN, then leaves the session logged out. */
function proveOfficer(slot: graphene.Slot, soPin: string): Promise<void> {
  return withSession(slot, (s) => login(s, soPin, graphene.UserType.SO, 'SO login'));
}

// --- init-token ------------------------------------------------------------------------

export async function initToken(req: { library: LibraryHandle; label: string; soPin: string; userPin: string; force?: boolean }): Promise<{ serial: string }> {
  const profile = req.library.profile;
  if (profile.provisioning !== 'free-slot') {
    throw vbiError('CONFIG_INVALID', `tokens of profile '${profile.name}' come initialised by the vendor: take them over with 'ceremony take-ownership' (no C_InitToken)`);
  }
  checkPin(profile, req.soPin, 'the SO PIN');
  checkPin(profile, req.userPin, 'the user PIN');
  let slot: graphene.Slot | undefined;
  try {
    slot = findSlotByLabel(req.library, req.label);
  } catch {
    slot = undefined;
  }
  if (slot && !req.force) {
    throw vbiError('TOKEN_ALREADY_INITIALIZED', `token '${req.label}' is already initialised; re-initialising destroys every key on it (--force)`);
  }
  const target = slot ?? findFreeSlot(req.library);
  try {
    // graphene's Slot.initToken mis-reads the return value: call C_InitToken directly.
    target.lib.C_InitToken(target.handle, req.soPin, req.label.padEnd(32, ' '));
  } catch (e) {
    throw toVbiError(e, `initialise token '${req.label}'`);
  }
  const fresh = findSlotByLabel(req.library, req.label);
  return withSession(fresh, (s) => {
    login(s, req.soPin, graphene.UserType.SO, 'SO login');
    s.initPin(req.userPin);
    return { serial: fresh.getToken().serialNumber.trim() };
  });
}

// --- take-ownership (vendor-initialised tokens) -----------------------------------------

/**
 * Takes over a token the vendor initialised (an HSM partition, a card set, a token with a
 * factory SO PIN): proves the factory SO PIN, changes it to the officers' SO PIN (C_SetPIN),
 * sets the service's user PIN (C_InitPIN), and checks that the factory PIN no longer logs in.
 * No C_InitToken: the token's objects, label and serial stay as the vendor left them. PINs are
 * checked against the profile's and the token's length rules before the token sees them.
 */
export async function takeOwnership(req: TokenRef & { factorySoPin: string; soPin: string; userPin: string }): Promise<{ serial: string }> {
  const slot = findSlotByLabel(req.library, req.label);
  const info = slot.getToken();
  const limits = { minPinLen: info.minPinLen, maxPinLen: info.maxPinLen };
  checkPin(req.library.profile, req.soPin, 'the new SO PIN', limits);
  checkPin(req.library.profile, req.userPin, 'the user PIN', limits);
  if (req.soPin === req.factorySoPin) throw vbiError('CONFIG_INVALID', 'the new SO PIN must differ from the factory SO PIN');
  await withSession(slot, (s) => {
    login(s, req.factorySoPin, graphene.UserType.SO, 'SO login with the factory PIN');
    try {
      s.setPin(req.factorySoPin, req.soPin);
      s.initPin(req.userPin);
    } catch (e) {
      throw toVbiError(e, 'change the SO PIN and set the user PIN');
    }
  });
  // the factory PIN must be dead, the new ones alive
  const factoryStillWorks = await withSession(slot, (s) => {
    try {
      s.login(req.factorySoPin, graphene.UserType.SO);
      return true;
    } catch (e) {
      if (ckr(e) === pkcs11.CKR_PIN_INCORRECT) return false;
      throw toVbiError(e, 'SO login with the factory PIN');
    }
  });
  if (factoryStillWorks) throw vbiError('CONFIG_INVALID', `token '${req.label}' still accepts the factory SO PIN`);
  await proveOfficer(slot, req.soPin);
  await withSession(slot, (s) => login(s, req.userPin, graphene.UserType.USER, 'user login'));
  return { serial: slot.getToken().serialNumber.trim() };
}

// --- module serial ---------------------------------------------------------------------

/**
 * The module serial of a module token as the service will use it: the token's serialNumber, or
 * (profile serialSource identity-key) derived from the identity public key, which is a public
 * object readable without login. Null before `generate` on an identity-key profile.
 */
export function moduleSerial(library: LibraryHandle, label: string): string | null {
  const slot = findSlotByLabel(library, label);
  if (library.profile.serialSource === 'token') return slot.getToken().serialNumber.trim() || null;
  const s = slot.open(graphene.SessionFlag.SERIAL_SESSION);
  try {
    const found = s.find({ class: graphene.ObjectClass.PUBLIC_KEY, label: roleLabel('module-identity') });
    return found.length === 1 ? serialFromIdentity(ecPublicKeySpki(found.items(0).toType<graphene.PublicKey>())) : null;
  } finally {
    s.close();
  }
}

// --- generate --------------------------------------------------------------------------

export async function generateModuleKeys(req: TokenRef & { soPin: string; userPin: string; suite: PackageSuite; roles?: readonly KeyRole[]; wrapMechanism?: number }): Promise<KeyReport[]> {
  const slot = findSlotByLabel(req.library, req.label);
  await proveOfficer(slot, req.soPin);
  return withSession(slot, async (s) => {
    login(s, req.userPin, graphene.UserType.USER, 'user login');
    const roles = req.roles ?? KEY_ROLES;
    for (const role of roles) {
      if (s.find({ label: roleLabel(role) }).length > 0) {
        throw vbiError('KEY_EXISTS', `token '${req.label}' already holds ${roleLabel(role)}; re-initialise the token to start over`);
      }
    }
    for (const role of roles) {
      await generateRole(s, role, req.suite).catch((e) => {
        throw toVbiError(e, `generate ${roleLabel(role)} on '${req.label}' ('ceremony probe --label ${req.label}' shows what the token refuses)`);
      });
    }
    return refuseWeak(reportKeys(s, req.suite, req.wrapMechanism), `token '${req.label}'`);
  });
}

/** The ceremony fails (non-zero exit) when any key on the token has a weak attribute. */
function refuseWeak(keys: KeyReport[], where: string): KeyReport[] {
  const weak = keys.filter((k) => k.weaknesses.length > 0);
  if (weak.length) {
    throw vbiError('KEY_ATTRIBUTES_WEAK', `${where}: ${weak.map((k) => `${k.label} (${k.class}): ${k.weaknesses.join(', ')}`).join('; ')}`, { keys: weak });
  }
  return keys;
}

async function generateRole(s: graphene.Session, role: KeyRole, suite: PackageSuite): Promise<void> {
  const spec = roleSpec(role);
  if (isSecretRole(spec)) {
    await ops.generateKey(s, secretKeyGenMechanism(role, suite), secretKeyTemplate(role, suite, profileOf(s)));
    return;
  }
  const { kind, publicTemplate, privateTemplate } = pairTemplates(role);
  if (kind === 'ec-p256') {
    await ops.generateKeyPair(s, 'EC_KEY_PAIR_GEN', { ...publicTemplate, keyType: graphene.KeyType.EC, paramsEC: P256_PARAMS }, { ...privateTemplate, keyType: graphene.KeyType.EC });
  } else {
    await ops.generateKeyPair(s, 'RSA_PKCS_KEY_PAIR_GEN',
      { ...publicTemplate, keyType: graphene.KeyType.RSA, modulusBits: 3072, publicExponent: Buffer.from([1, 0, 1]) },
      { ...privateTemplate, keyType: graphene.KeyType.RSA });
  }
}

// --- clone -----------------------------------------------------------------------------

/**
 * Copies the shared package keys from one module token to another under a one-time RSA-3072
 * transport key generated inside the destination token. The source keys carry
 * CKA_WRAP_WITH_TRUSTED, so the source token wraps them only under a key its SO marked
 * CKA_TRUSTED: the SO imports the destination's transport public key as such a key for the
 * duration of the clone and destroys it afterwards. Key values never exist outside the tokens.
 */
export async function cloneSharedKeys(req: {
  from: TokenRef & { soPin: string; userPin: string };
  to: TokenRef & { soPin: string; userPin: string };
  suite: PackageSuite;
  /** Defaults to the source library's token profile. */
  oaepHash?: 'sha1' | 'sha256';
  wrapMechanism?: number;
}): Promise<{ from: KeyReport[]; to: KeyReport[] }> {
  if (!req.from.library.profile.sharedKeysExtractable) {
    throw vbiError('CONFIG_INVALID', `token profile '${req.from.library.profile.name}' keeps the shared package keys non-extractable: they cannot be cloned (use the token's own backup)`);
  }
  const src = findSlotByLabel(req.from.library, req.from.label);
  const dst = findSlotByLabel(req.to.library, req.to.label);
  await proveOfficer(dst, req.to.soPin);
  const oaep = rsaOaep(req.oaepHash ?? req.from.library.profile.oaepHash);
  const transportLabel = `vbi.clone.transport.${Date.now()}`;

  await withSession(dst, async (dstSession) => {
    login(dstSession, req.to.userPin, graphene.UserType.USER, 'destination user login');
    for (const role of SHARED_ROLES) {
      if (dstSession.find({ label: roleLabel(role) }).length > 0) {
        throw vbiError('KEY_EXISTS', `destination '${req.to.label}' already holds ${roleLabel(role)}`);
      }
    }
    const t = SESSION_KEY_TEMPLATES['clone-transport'];
    const transport = await ops.generateKeyPair(dstSession, 'RSA_PKCS_KEY_PAIR_GEN',
      { ...t.publicAttributes, keyType: graphene.KeyType.RSA, modulusBits: 3072, publicExponent: Buffer.from([1, 0, 1]) },
      { ...t.privateAttributes, keyType: graphene.KeyType.RSA });
    const pub = transport.publicKey.getAttribute({ modulus: null, publicExponent: null });

    // Source: the SO imports the transport public key as a trusted wrapping key...
    await withSession(src, (s) => {
      login(s, req.from.soPin, graphene.UserType.SO, 'source SO login');
      s.create({
        class: graphene.ObjectClass.PUBLIC_KEY, keyType: graphene.KeyType.RSA, token: true, private: false,
        label: transportLabel, modulus: pub.modulus, publicExponent: pub.publicExponent,
        wrap: true, encrypt: false, verify: false, trusted: true,
      });
    });
    // ...the user role wraps each shared key under it, and the trusted key is destroyed.
    const wrapped = await withSession(src, async (s) => {
      login(s, req.from.userPin, graphene.UserType.USER, 'source user login');
      const wrappingKey = s.find({ class: graphene.ObjectClass.PUBLIC_KEY, label: transportLabel }).items(0).toType<graphene.PublicKey>();
      try {
        const out: Array<[KeyRole, Buffer]> = [];
        for (const role of SHARED_ROLES) {
          const found = s.find({ class: graphene.ObjectClass.SECRET_KEY, label: roleLabel(role) });
          if (found.length !== 1) throw vbiError('KEY_MISSING', `source '${req.from.label}' has no ${roleLabel(role)}`);
          out.push([role, await ops.wrapKey(s, oaep, wrappingKey, found.items(0).toType<graphene.SecretKey>())]);
        }
        return out;
      } finally {
        ops.destroyQuietly(wrappingKey);
      }
    });
    // Destination: unwrap into token objects with the role templates (same attributes as generated).
    for (const [role, blob] of wrapped) {
      await ops.unwrapKey(dstSession, oaep, transport.privateKey, blob, secretKeyUnwrapTemplate(role, req.suite, profileOf(dstSession)));
    }
    ops.destroyQuietly(transport.privateKey);
    ops.destroyQuietly(transport.publicKey);
  });

  const from = await tokenKeyReport({ library: req.from.library, label: req.from.label, userPin: req.from.userPin, suite: req.suite, wrapMechanism: req.wrapMechanism });
  const to = await tokenKeyReport({ library: req.to.library, label: req.to.label, userPin: req.to.userPin, suite: req.suite, wrapMechanism: req.wrapMechanism });
  for (const role of SHARED_ROLES) {
    const a = from.find((k) => k.role === role)?.kcv;
    const b = to.find((k) => k.role === role)?.kcv;
    if (!a || a !== b) throw vbiError('KCV_MISMATCH', `${roleLabel(role)}: source KCV ${a}, destination KCV ${b}`);
  }
  refuseWeak(from, `source '${req.from.label}'`);
  refuseWeak(to, `destination '${req.to.label}'`);
  return { from, to };
}

// --- status ----------------------------------------------------------------------------

export function tokenKeyReport(req: TokenRef & { userPin: string; suite: PackageSuite; wrapMechanism?: number }): Promise<KeyReport[]> {
  const slot = findSlotByLabel(req.library, req.label);
  return withSession(slot, (s) => {
    login(s, req.userPin, graphene.UserType.USER, 'user login');
    return reportKeys(s, req.suite, req.wrapMechanism);
  });
}

const BOOL_ATTRS = [
  'token', 'private', 'modifiable', 'destroyable', 'copyable', 'sensitive', 'extractable', 'wrapWithTrusted', 'trusted',
  'encrypt', 'decrypt', 'wrap', 'unwrap', 'sign', 'verify', 'derive',
] as const;

function readBooleans(obj: graphene.SessionObject): Attributes {
  const out: Attributes = {};
  for (const name of BOOL_ATTRS) {
    try {
      const v = obj.getAttribute(name);
      if (typeof v === 'boolean') out[name] = v;
    } catch {
      // attribute not defined for this class
    }
  }
  return out;
}

function roleOfLabel(label: string): KeyRole | null {
  return KEY_ROLES.find((r) => roleLabel(r) === label) ?? null;
}

function reportKeys(s: graphene.Session, suite: PackageSuite, wrapMechanism = profileOf(s).wrapMechanism): KeyReport[] {
  const reports: KeyReport[] = [];
  const objects = s.find();
  for (let i = 0; i < objects.length; i++) {
    const obj = objects.items(i);
    const cls = obj.class;
    if (cls !== graphene.ObjectClass.SECRET_KEY && cls !== graphene.ObjectClass.PRIVATE_KEY && cls !== graphene.ObjectClass.PUBLIC_KEY) continue;
    const label = String(obj.getAttribute('label') ?? '');
    const role = roleOfLabel(label);
    const keyType = graphene.KeyType[obj.getAttribute('keyType') as number] ?? 'unknown';
    const attributes = readBooleans(obj);
    const kind = cls === graphene.ObjectClass.SECRET_KEY ? 'secret' : cls === graphene.ObjectClass.PRIVATE_KEY ? 'private' : 'public';
    const r: KeyReport = { role, label, class: kind, keyType, attributes, weaknesses: [] };
    if (kind === 'secret') {
      r.kcv = functionalKcv(s, obj.toType<graphene.SecretKey>(), role, suite, wrapMechanism);
    } else if (kind === 'public') {
      try {
        const spki = keyType === 'EC' ? ecPublicKeySpki(obj.toType<graphene.PublicKey>()) : rsaPublicKeySpki(obj.toType<graphene.PublicKey>());
        r.spkiSha256 = createHash('sha256').update(spki).digest('hex').slice(0, 16);
      } catch { r.spkiSha256 = undefined; }
    }
    r.weaknesses = weaknesses(r, suite, profileOf(s));
    reports.push(r);
  }
  return reports.sort((a, b) => a.label.localeCompare(b.label) || a.class.localeCompare(b.class));
}

/**
 * Key check value computed by using the key for its own role, first 3 bytes of:
 *  - encryption key: E_K(zero block) in ECB, the classic KCV (equal to CKA_CHECK_VALUE);
 *  - MAC key: CMAC_K(zero block) (the CMAC-based KCV of ANSI X9.24-1:2017);
 *  - KEK: the RFC 5649 wrap of an all-zero 32-byte key.
 * Computed rather than read from CKA_CHECK_VALUE because SoftHSM2 leaves that attribute empty
 * on keys created by C_UnwrapKey, which would make the clone check meaningless.
 */
function functionalKcv(s: graphene.Session, key: graphene.SecretKey, role: KeyRole | null, suite: PackageSuite, wrapMechanism: number): string | undefined {
  const des3 = key.getAttribute('keyType') === graphene.KeyType.DES3;
  const zero = Buffer.alloc(des3 ? 8 : 16);
  try {
    if (role === 'package-enc') {
      return s.createCipher(des3 ? 'DES3_ECB' : 'AES_ECB', key).once(zero, Buffer.alloc(32)).subarray(0, 3).toString('hex');
    }
    if (role === 'package-mac') {
      return s.createSign(macMechanism(suite), key).once(zero).subarray(0, 3).toString('hex');
    }
    if (role === 'package-kek') {
      const probe = s.create({
        class: graphene.ObjectClass.SECRET_KEY, keyType: graphene.KeyType.AES, token: false, private: false,
        value: Buffer.alloc(32), extractable: true, sensitive: false, label: 'vbi.kcv.probe',
      }).toType<graphene.SecretKey>();
      try {
        return s.wrapKey(keyWrapPad(wrapMechanism), key, probe).subarray(0, 3).toString('hex');
      } finally {
        ops.destroyQuietly(probe);
      }
    }
    const cv = key.getAttribute({ checkValue: null }).checkValue as Buffer;
    return cv.length ? cv.toString('hex') : undefined;
  } catch {
    return undefined;
  }
}

/** Attributes that make a key weaker than its role allows (on a token of `profile`). */
export function weaknesses(r: KeyReport, suite: PackageSuite, profile?: TokenProfile): string[] {
  const w: string[] = [];
  const a = r.attributes;
  if (!r.label) w.push('missing label');
  if (r.class !== 'public') {
    if (a.sensitive === false) w.push('not sensitive');
    if (a.extractable === true && a.wrapWithTrusted !== true) w.push('extractable without CKA_WRAP_WITH_TRUSTED');
    if (a.private === false) w.push('not private');
  }
  if (r.role) {
    const spec = roleSpec(r.role);
    const want = roleAttributes(r.role, r.class, profile);
    for (const [name, value] of Object.entries(want)) {
      if (name in a && a[name] !== value) w.push(`${name}=${a[name]} but template says ${value}`);
    }
    if (isSecretRole(spec) && r.keyType !== spec.keyType[suite]) w.push(`key type ${r.keyType} but suite '${suite}' needs ${spec.keyType[suite]}`);
  }
  return w;
}

/** Counts the service's data objects (checkpoint ring, markers) on a token, for `status`. */
export function countDataObjects(req: TokenRef & { userPin: string }): Promise<number> {
  const slot = findSlotByLabel(req.library, req.label);
  return withSession(slot, (s) => {
    login(s, req.userPin, graphene.UserType.USER, 'user login');
    return s.find({ class: graphene.ObjectClass.DATA, application: DATA_APPLICATION }).length;
  });
}

export { proveOfficer };
