import { createHash } from 'node:crypto';
import * as graphene from 'graphene-pk11';
import { vbiError } from '@vbi/core/errors';
import { KeyRole, roleLabel, secretKeyTemplate } from './key-templates';
import { PackageSuite } from './mechanisms';

/** Handles of the module's long-term keys, found by label at key entry and after every recovery. */
export interface KeyHandles {
  kek: graphene.SecretKey;
  enc: graphene.SecretKey;
  mac: graphene.SecretKey;
  identity: graphene.PrivateKey;
  identityPub: graphene.PublicKey;
  transportPub: graphene.PublicKey;
}

/**
 * Finds every module key by its role's label and refuses a token whose keys are weak (not
 * sensitive, not private, exportable) or of another suite than the configured one.
 */
export function findModuleKeys(s: graphene.Session, tokenLabel: string, suite: PackageSuite): KeyHandles {
  const one = (role: KeyRole, cls: graphene.ObjectClass) => {
    const found = s.find({ class: cls, label: roleLabel(role) });
    if (found.length !== 1) {
      throw vbiError('KEY_MISSING', `token '${tokenLabel}' has ${found.length} objects for ${role} (${roleLabel(role)})`);
    }
    return found.items(0);
  };
  const keys: KeyHandles = {
    kek: one('package-kek', graphene.ObjectClass.SECRET_KEY).toType(),
    enc: one('package-enc', graphene.ObjectClass.SECRET_KEY).toType(),
    mac: one('package-mac', graphene.ObjectClass.SECRET_KEY).toType(),
    identity: one('module-identity', graphene.ObjectClass.PRIVATE_KEY).toType(),
    identityPub: one('module-identity', graphene.ObjectClass.PUBLIC_KEY).toType(),
    transportPub: one('module-transport', graphene.ObjectClass.PUBLIC_KEY).toType(),
  };
  const transportPrivate = one('module-transport', graphene.ObjectClass.PRIVATE_KEY);
  // A long-term key that reads back exportable is not one the service may use (the ceremony
  // refuses to make one; this catches a token provisioned otherwise).
  const weak: string[] = [];
  for (const [role, key] of [['package-kek', keys.kek], ['package-enc', keys.enc], ['package-mac', keys.mac],
    ['module-identity', keys.identity], ['module-transport', transportPrivate]] as const) {
    const a = key.getAttribute({ sensitive: null, extractable: null, private: null }) as { sensitive?: boolean; extractable?: boolean; private?: boolean };
    let wrapWithTrusted = false;
    try { wrapWithTrusted = key.getAttribute('wrapWithTrusted') === true; } catch { /* attribute unknown to the token */ }
    if (a.sensitive !== true) weak.push(`${role}: not sensitive`);
    if (a.private !== true) weak.push(`${role}: not private`);
    if (a.extractable === true && !wrapWithTrusted) weak.push(`${role}: extractable without CKA_WRAP_WITH_TRUSTED`);
  }
  if (weak.length) throw vbiError('KEY_ATTRIBUTES_WEAK', `token '${tokenLabel}': ${weak.join('; ')}`);
  // The key types must be those of the configured suite, or every package would fail to open.
  for (const [role, key] of [['package-enc', keys.enc], ['package-mac', keys.mac]] as const) {
    const want = secretKeyTemplate(role, suite).keyType;
    if (key.getAttribute('keyType') !== want) {
      throw vbiError('CONFIG_INVALID', `${role} on '${tokenLabel}' is not a key of suite '${suite}'`);
    }
  }
  return keys;
}

/** The transport private key, looked up in the session that uses it. */
export function transportPrivate(s: graphene.Session): graphene.Key {
  const found = s.find({ class: graphene.ObjectClass.PRIVATE_KEY, label: roleLabel('module-transport') });
  if (found.length !== 1) throw vbiError('KEY_MISSING', 'module transport key');
  return found.items(0).toType<graphene.PrivateKey>();
}

/** The host-side digest that ECDSA signs (the token gets SHA-256(data), not data). */
export function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}
