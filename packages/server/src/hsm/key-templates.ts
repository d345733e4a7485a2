import * as graphene from 'graphene-pk11';
import templates from '../../hsm/key-templates.json';
import { CKA_COPYABLE, CKA_DESTROYABLE, PackageSuite } from './mechanisms';
import { TokenProfile } from './token-profile';

/** PKCS#11 v2.40 attributes graphene-pk11 2.3 does not know by name. */
graphene.registerAttribute('destroyable', CKA_DESTROYABLE, 'boolean');
graphene.registerAttribute('copyable', CKA_COPYABLE, 'boolean');

export type KeyRole = ModuleKeyRole | SigningRole;
/** The keys of a module token (what `ceremony generate` creates). */
export type ModuleKeyRole = 'package-kek' | 'package-enc' | 'package-mac' | 'module-identity' | 'module-transport';
export const KEY_ROLES: readonly ModuleKeyRole[] = ['package-kek', 'package-enc', 'package-mac', 'module-identity', 'module-transport'];
/**
 * EC P-256 signing keys that live in their own tokens, never in a module token: the dev/test
 * postal CA (root, issuing), the vendor RA and each officer's approval key. Each may exist in several generations; the
 * token object of generation n is labelled `<role label>.<n>` (signingKeyLabel).
 */
export type SigningRole = 'ca-root' | 'ca-issuing' | 'vendor-ra' | 'officer';
export const SIGNING_ROLES: readonly SigningRole[] = ['ca-root', 'ca-issuing', 'vendor-ra', 'officer'];
/** The roles every module of a deployment shares, copied by `ceremony clone`. */
export const SHARED_ROLES: readonly KeyRole[] = ['package-kek', 'package-enc', 'package-mac'];

export type Attributes = Record<string, boolean>;

interface SecretRoleSpec {
  label: string;
  kind: 'secret';
  shared: boolean;
  keyType: Record<PackageSuite, 'AES' | 'DES3'>;
  valueLen: Record<PackageSuite, number | null>;
  attributes: Attributes;
}
interface PairRoleSpec {
  label: string;
  kind: 'ec-p256' | 'rsa-3072';
  shared: boolean;
  privateAttributes: Attributes;
  publicAttributes: Attributes;
}
export type RoleSpec = SecretRoleSpec | PairRoleSpec;

const roles = templates.roles as unknown as Record<KeyRole, RoleSpec>;
const sessionKeys = templates.sessionKeys as unknown as {
  'indicium-generate': { privateAttributes: Attributes; publicAttributes: Attributes };
  'indicium-unwrap': Attributes;
  'user-secret-generate': Attributes;
  'chain-wrap': Attributes;
  'chain-hmac': Attributes;
  'chain-encrypt': Attributes;
  'client-import': Attributes;
  'clone-transport': { privateAttributes: Attributes; publicAttributes: Attributes };
};

export function roleSpec(role: KeyRole): RoleSpec {
  return roles[role];
}

export function roleLabel(role: KeyRole): string {
  return roles[role].label;
}

export function isSecretRole(spec: RoleSpec): spec is SecretRoleSpec {
  return spec.kind === 'secret';
}

/**
 * The attributes a key of `role` must have on a token of `profile`: the role's template without
 * the attributes the profile leaves out, and with the shared keys non-extractable (no
 * CKA_WRAP_WITH_TRUSTED) where the profile says the token cannot confine their export.
 */
export function roleAttributes(role: KeyRole, cls: 'secret' | 'private' | 'public', profile?: TokenProfile): Attributes {
  const spec = roles[role];
  const base: Attributes = isSecretRole(spec) ? { ...spec.attributes } : cls === 'private' ? { ...spec.privateAttributes } : { ...spec.publicAttributes };
  if (profile) {
    for (const a of profile.omitAttributes) delete base[a];
    if (isSecretRole(spec) && spec.shared && !profile.sharedKeysExtractable) {
      base.extractable = false;
      delete base.wrapWithTrusted;
    }
  }
  return base;
}

/** Template for generating (or unwrapping into) the secret key of a role. */
export function secretKeyTemplate(role: KeyRole, suite: PackageSuite, profile?: TokenProfile): graphene.ITemplate {
  const spec = roles[role];
  if (!isSecretRole(spec)) throw new Error(`${role} is not a secret-key role`);
  const keyType = spec.keyType[suite] === 'AES' ? graphene.KeyType.AES : graphene.KeyType.DES3;
  const t: graphene.ITemplate = { class: graphene.ObjectClass.SECRET_KEY, keyType, label: spec.label, ...roleAttributes(role, 'secret', profile) };
  const len = spec.valueLen[suite];
  if (len !== null) t.valueLen = len;
  return modifiableLast(t);
}

/**
 * Template for C_UnwrapKey into a role (the clone ceremony): the key length comes from the
 * wrapped value, and SoftHSM2 answers CKR_ATTRIBUTE_READ_ONLY to CKA_VALUE_LEN there.
 */
export function secretKeyUnwrapTemplate(role: KeyRole, suite: PackageSuite, profile?: TokenProfile): graphene.ITemplate {
  const t = { ...secretKeyTemplate(role, suite, profile) };
  delete t.valueLen;
  return modifiableLast(t);
}

/**
 * SoftHSM2 applies an unwrap template in order and refuses every attribute after
 * CKA_MODIFIABLE=false (CKR_ATTRIBUTE_READ_ONLY), so it goes last in every template.
 */
function modifiableLast(t: graphene.ITemplate): graphene.ITemplate {
  if (!('modifiable' in t)) return t;
  const { modifiable, ...rest } = t;
  return { ...rest, modifiable };
}

export function secretKeyGenMechanism(role: KeyRole, suite: PackageSuite): graphene.MechanismType {
  const spec = roles[role];
  if (!isSecretRole(spec)) throw new Error(`${role} is not a secret-key role`);
  return spec.keyType[suite] === 'AES' ? 'AES_KEY_GEN' : 'DES3_KEY_GEN';
}

export function pairTemplates(role: KeyRole): { kind: PairRoleSpec['kind']; publicTemplate: graphene.ITemplate; privateTemplate: graphene.ITemplate } {
  const spec = roles[role];
  if (isSecretRole(spec)) throw new Error(`${role} is not a key-pair role`);
  return {
    kind: spec.kind,
    publicTemplate: modifiableLast({ class: graphene.ObjectClass.PUBLIC_KEY, label: spec.label, ...spec.publicAttributes }),
    privateTemplate: modifiableLast({ class: graphene.ObjectClass.PRIVATE_KEY, label: spec.label, ...spec.privateAttributes }),
  };
}

export const SESSION_KEY_TEMPLATES = sessionKeys;

export type SessionKeyName = 'indicium-unwrap' | 'user-secret-generate' | 'chain-wrap' | 'chain-hmac' | 'chain-encrypt' | 'client-import';

/** A session-key template without its documentation keys ("$comment"). */
export function sessionTemplate(name: SessionKeyName): graphene.ITemplate {
  return Object.fromEntries(Object.entries(sessionKeys[name]).filter(([k]) => !k.startsWith('$'))) as graphene.ITemplate;
}

/** Token object label of generation `generation` (1, 2, ...) of a signing role's key. */
export function signingKeyLabel(role: SigningRole, generation: number): string {
  if (!Number.isInteger(generation) || generation < 1) throw new Error(`key generation must be a positive integer, got ${generation}`);
  return `${roles[role].label}.${generation}`;
}

/** The signing role and generation a token object label names, or null. */
export function parseSigningKeyLabel(label: string): { role: SigningRole; generation: number } | null {
  for (const role of SIGNING_ROLES) {
    const prefix = `${roles[role].label}.`;
    if (label.startsWith(prefix) && /^[1-9][0-9]{0,8}$/.test(label.slice(prefix.length))) {
      return { role, generation: Number(label.slice(prefix.length)) };
    }
  }
  return null;
}
