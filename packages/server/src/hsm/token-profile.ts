import * as graphene from 'graphene-pk11';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { vbiError } from '@vbi/core/errors';
import { CKM_AES_KEY_WRAP_KWP, PackageSuite, isPackageSuite, mechanismHex } from './mechanisms';

/**
 * A token profile: what one PKCS#11 implementation supports and needs, declared in
 * hsm/profiles/<name>.json (packages/server/hsm/README.md). Everything that differs between tokens is read from
 * the profile; `ceremony probe` and the service's start-up check (packages/server/src/hsm/token-probe.ts) test a
 * token against it and refuse one that does not do what the profile says.
 */
export interface TokenProfile {
  name: string;
  description: string;
  /** 'tested': the suite or the probe ran on this implementation; 'documented': from vendor manuals. */
  basis: 'tested' | 'documented';
  /** Selects the profile when PKCS11_PROFILE is unset (library path) and checks it (manufacturer). */
  match: { libraryPath?: string; manufacturerID?: string };
  /** Mechanism number of AES key wrap with padding. */
  wrapMechanism: number;
  oaepHash: 'sha1' | 'sha256';
  /** Package suites whose mechanisms the token has; the self-tests run only the configured one. */
  suites: PackageSuite[];
  /**
   * How tokens come to exist: 'free-slot' (C_InitToken on an uninitialised slot, as SoftHSM2
   * offers), 'reinit-slot' (C_InitToken on one of a fixed set of slots), 'vendor-initialised'
   * (no C_InitToken: the ceremony takes the token over by changing the factory SO PIN).
   */
  provisioning: 'free-slot' | 'reinit-slot' | 'vendor-initialised';
  /** The module serial: the token's serialNumber, or derived from the module identity key. */
  serialSource: 'token' | 'identity-key';
  pin: { min: number; max: number };
  /** False: known-answer tests never import a clear key (FIPS mode); they run on generated keys. */
  clearKeyImport: boolean;
  /** Attributes left out of every template (the token refuses them). */
  omitAttributes: string[];
  /**
   * Attributes left out of C_UnwrapKey templates: `name` always, `name=true` / `name=false` only
   * with that value (graphene attribute names: extractable, sensitive, ...). Whatever the token then
   * makes of the key is checked after every unwrap (checkUnwrapped).
   */
  unwrapOmit: string[];
  /**
   * True for a token that ignores CKA_SENSITIVE=true / CKA_EXTRACTABLE=false in an unwrap
   * template (the key comes out readable): right after C_UnwrapKey the service sets them with
   * C_SetAttributeValue, then checks the key as on any token. Unwrap templates that ask
   * CKA_MODIFIABLE=false (the clone's) cannot be fixed so and stay refused.
   */
  unwrapRestrict: boolean;
  /** Whether the token refuses to wrap a CKA_WRAP_WITH_TRUSTED key under an untrusted key. */
  wrapWithTrusted: 'enforced' | 'not-enforced';
  /** False: the shared package keys are generated non-extractable and `ceremony clone` is refused. */
  sharedKeysExtractable: boolean;
  notes: string[];
}

/** packages/server/hsm/profiles, seen from packages/server/dist/src/hsm (compiled) or from packages/server/src/hsm. */
function profileDir(): string {
  const fromDist = join(__dirname, '..', '..', '..', 'hsm', 'profiles');
  return existsSync(fromDist) ? fromDist : join(__dirname, '..', '..', 'hsm', 'profiles');
}

const WRAP = /^0x[0-9a-fA-F]{1,8}$/;

/** Parses and checks one profile document; throws CONFIG_INVALID naming the field. */
export function parseProfile(doc: unknown, source: string): TokenProfile {
  const bad = (field: string, why: string) => vbiError('CONFIG_INVALID', `token profile ${source}: ${field} ${why}`);
  if (typeof doc !== 'object' || doc === null) throw bad('document', 'is not an object');
  const d = doc as Record<string, unknown>;
  const str = (k: string) => {
    if (typeof d[k] !== 'string' || !(d[k] as string).length) throw bad(k, 'must be a non-empty string');
    return d[k] as string;
  };
  const oneOf = <T extends string>(k: string, values: readonly T[]): T => {
    if (!values.includes(d[k] as T)) throw bad(k, `must be one of ${values.join(', ')}`);
    return d[k] as T;
  };
  const strings = (k: string) => {
    const v = d[k] ?? [];
    if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw bad(k, 'must be a list of strings');
    return v as string[];
  };
  const bool = (k: string) => {
    if (typeof d[k] !== 'boolean') throw bad(k, 'must be true or false');
    return d[k] as boolean;
  };
  const wrap = str('wrapMechanism');
  if (!WRAP.test(wrap)) throw bad('wrapMechanism', `must be a hex mechanism number such as ${mechanismHex(CKM_AES_KEY_WRAP_KWP)}`);
  const suites = strings('suites');
  if (!suites.length || !suites.every(isPackageSuite)) throw bad('suites', 'must list aes and/or legacy-3des');
  const pin = d.pin as { min?: unknown; max?: unknown } | undefined;
  if (!pin || !Number.isInteger(pin.min) || !Number.isInteger(pin.max) || (pin.min as number) < 1 || (pin.max as number) < (pin.min as number)) {
    throw bad('pin', 'must be { "min": n, "max": m } with 1 <= n <= m');
  }
  const match = (d.match ?? {}) as { libraryPath?: unknown; manufacturerID?: unknown };
  for (const k of ['libraryPath', 'manufacturerID'] as const) {
    if (match[k] !== undefined && typeof match[k] !== 'string') throw bad(`match.${k}`, 'must be a string (a regular expression)');
  }
  return {
    name: str('name'),
    description: str('description'),
    basis: oneOf('basis', ['tested', 'documented'] as const),
    match: { libraryPath: match.libraryPath as string | undefined, manufacturerID: match.manufacturerID as string | undefined },
    wrapMechanism: Number.parseInt(wrap, 16),
    oaepHash: oneOf('oaepHash', ['sha1', 'sha256'] as const),
    suites: suites as PackageSuite[],
    provisioning: oneOf('provisioning', ['free-slot', 'reinit-slot', 'vendor-initialised'] as const),
    serialSource: oneOf('serialSource', ['token', 'identity-key'] as const),
    pin: { min: pin.min as number, max: pin.max as number },
    clearKeyImport: bool('clearKeyImport'),
    omitAttributes: strings('omitAttributes'),
    unwrapOmit: strings('unwrapOmit'),
    unwrapRestrict: bool('unwrapRestrict'),
    wrapWithTrusted: oneOf('wrapWithTrusted', ['enforced', 'not-enforced'] as const),
    sharedKeysExtractable: bool('sharedKeysExtractable'),
    notes: strings('notes'),
  };
}

/** Every profile shipped in packages/server/hsm/profiles, by name. */
export function listProfiles(): TokenProfile[] {
  const dir = profileDir();
  return readdirSync(dir).filter((f) => f.endsWith('.json')).sort()
    .map((f) => parseProfile(JSON.parse(readFileSync(join(dir, f), 'utf8')), f));
}

/**
 * The profile named by `nameOrPath` (a shipped profile's name, or a path to a JSON file), or, when
 * that is unset, the shipped profile whose `match.libraryPath` matches the library path.
 */
export function loadProfile(nameOrPath: string | undefined, libraryPath: string): TokenProfile {
  if (nameOrPath) {
    if (nameOrPath.endsWith('.json') || isAbsolute(nameOrPath)) {
      if (!existsSync(nameOrPath)) throw vbiError('CONFIG_INVALID', `token profile file ${nameOrPath} does not exist`);
      return parseProfile(JSON.parse(readFileSync(nameOrPath, 'utf8')), nameOrPath);
    }
    const found = listProfiles().find((p) => p.name === nameOrPath);
    if (!found) throw vbiError('CONFIG_INVALID', `no token profile '${nameOrPath}' (have: ${listProfiles().map((p) => p.name).join(', ')})`);
    return found;
  }
  const matching = listProfiles().filter((p) => p.match.libraryPath && new RegExp(p.match.libraryPath, 'i').test(libraryPath));
  if (matching.length !== 1) {
    throw vbiError('CONFIG_INVALID', `PKCS11_PROFILE is not set and ${matching.length ? 'several profiles' : 'no profile'} match the library ${libraryPath} (have: ${listProfiles().map((p) => p.name).join(', ')}); run 'npm run ceremony -- probe' to see which fits`);
  }
  return matching[0];
}

/** A PIN within the profile's length rules, or CONFIG_INVALID saying which rule. */
export function checkPin(profile: TokenProfile, pin: string, what: string, token?: { minPinLen: number; maxPinLen: number }): void {
  const min = Math.max(profile.pin.min, token?.minPinLen ?? 0);
  const max = Math.min(profile.pin.max, token?.maxPinLen && token.maxPinLen > 0 ? token.maxPinLen : Infinity);
  if (pin.length < min || pin.length > max) {
    throw vbiError('CONFIG_INVALID', `${what} must be ${min} to ${max} characters on this token (profile '${profile.name}'), got ${pin.length}`);
  }
}

// --- the profile of a session's token -----------------------------------------------------

const byModule = new WeakMap<graphene.Module, TokenProfile>();

/** Records the profile of an initialised library (packages/server/src/hsm/pkcs11-library.ts). */
export function setLibraryProfile(module: graphene.Module, profile: TokenProfile): void {
  byModule.set(module, profile);
}

export function profileOf(session: graphene.Session): TokenProfile {
  const p = byModule.get(session.slot.module);
  if (!p) throw vbiError('CONFIG_INVALID', 'the PKCS#11 library was opened without a token profile');
  return p;
}

/** A template as this token takes it: the profile's omitted attributes left out. */
export function adaptTemplate(profile: TokenProfile, t: graphene.ITemplate, use: 'generate' | 'unwrap'): graphene.ITemplate {
  const out: graphene.ITemplate = {};
  for (const [k, v] of Object.entries(t)) {
    if (profile.omitAttributes.includes(k)) continue;
    if (use === 'unwrap' && (profile.unwrapOmit.includes(k) || profile.unwrapOmit.includes(`${k}=${String(v)}`))) continue;
    out[k] = v;
  }
  return out;
}

/**
 * After C_UnwrapKey: a key the template asked to be sensitive or non-extractable must be so.
 * Some tokens ignore these attributes in an unwrap template, which would leave key values
 * readable; the key is destroyed and KEY_ATTRIBUTES_WEAK raised (the module goes to Error).
 */
export function checkUnwrapped(key: graphene.Key, asked: graphene.ITemplate, token: () => string, profile?: TokenProfile): void {
  if (profile?.unwrapRestrict && asked.modifiable !== false) restrictUnwrapped(key, asked);
  const failures: string[] = [];
  let got: { sensitive?: unknown; extractable?: unknown };
  try {
    got = key.getAttribute({ sensitive: null, extractable: null }) as typeof got;
  } catch (e) {
    failures.push(`CKA_SENSITIVE/CKA_EXTRACTABLE unreadable (${(e as Error).message})`);
    got = {};
  }
  if (asked.sensitive === true && got.sensitive !== true) failures.push(`CKA_SENSITIVE=${String(got.sensitive)} where the template asks true`);
  if (asked.extractable === false && got.extractable !== false) failures.push(`CKA_EXTRACTABLE=${String(got.extractable)} where the template asks false`);
  if (!failures.length) return;
  try { key.destroy(); } catch { /* gone with its session */ }
  throw vbiError('KEY_ATTRIBUTES_WEAK', `token '${token()}' unwrapped a key weaker than asked: ${failures.join('; ')}`);
}

/** C_SetAttributeValue of what the unwrap template asked and the token did not apply. */
function restrictUnwrapped(key: graphene.Key, asked: graphene.ITemplate): void {
  const set: graphene.ITemplate = {};
  try {
    const got = key.getAttribute({ sensitive: null, extractable: null }) as { sensitive?: unknown; extractable?: unknown };
    if (asked.sensitive === true && got.sensitive !== true) set.sensitive = true;
    if (asked.extractable === false && got.extractable !== false) set.extractable = false;
    if (Object.keys(set).length) key.setAttribute(set);
  } catch {
    // the check below reports what is still wrong
  }
}

/**
 * The module serial of a profile with serialSource 'identity-key': the first 8 bytes of
 * SHA-256 over the identity key's SubjectPublicKeyInfo, 16 upper-case hex digits (as long as a
 * PKCS#11 serialNumber).
 */
export function serialFromIdentity(identitySpki: Buffer): string {
  return createHash('sha256').update(identitySpki).digest('hex').slice(0, 16).toUpperCase();
}
