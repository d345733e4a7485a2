import { vbiError } from '@vbi/core/errors';
import { DEV_CA_LABEL, DEV_VENDOR_LABEL } from '../pki/dev';
import { Config, DEV_SO_PIN, DEV_TOKEN_LABEL, DEV_USER_PIN, loadConfig, readSecret } from './config';

type Env = Record<string, string | undefined>;

/**
 * The key ceremonies' PINs (packages/server/src/ceremony/), from the environment, each read when a step asks
 * for it: VBI_SO_PIN[_FILE] and PKCS11_USER_PIN[_FILE] (clone: the *_FROM and *_TO pairs;
 * take-ownership: VBI_FACTORY_SO_PIN[_FILE]). The dev tokens (module, CA, vendor) fall back to
 * the dev PINs.
 */
export interface CeremonyPins {
  so(label: string): string;
  user(label: string): string;
  soFrom(label: string): string;
  userFrom(label: string): string;
  soTo(label: string): string;
  userTo(label: string): string;
  /** The vendor's factory SO PIN of a token taken over (VBI_FACTORY_SO_PIN[_FILE]). */
  factorySo(): string;
}

export interface CeremonySettings {
  /** The service's configuration (the PKCS#11 library, the var directory); a ceremony needs no module PIN. */
  config: Config;
  pins: CeremonyPins;
}

export function ceremonySettings(env: Env): CeremonySettings {
  return { config: loadConfig({ ...env, PKCS11_USER_PIN: env.PKCS11_USER_PIN ?? 'unused-by-ceremony' }), pins: ceremonyPins(env) };
}

export function ceremonyPins(env: Env): CeremonyPins {
  const pin = (key: string, label: string, devDefault: string): string => {
    const v = readSecret(env, key);
    if (v) return v;
    if (label === DEV_TOKEN_LABEL || label === DEV_CA_LABEL || label === DEV_VENDOR_LABEL) return devDefault;
    throw vbiError('CONFIG_INVALID', `${key} or ${key}_FILE must hold the PIN for token '${label}'`);
  };
  return {
    so: (label) => pin('VBI_SO_PIN', label, DEV_SO_PIN),
    user: (label) => pin('PKCS11_USER_PIN', label, DEV_USER_PIN),
    soFrom: (label) => pin('VBI_SO_PIN_FROM', label, DEV_SO_PIN),
    userFrom: (label) => pin('PKCS11_USER_PIN_FROM', label, DEV_USER_PIN),
    soTo: (label) => pin('VBI_SO_PIN_TO', label, DEV_SO_PIN),
    userTo: (label) => pin('PKCS11_USER_PIN_TO', label, DEV_USER_PIN),
    factorySo: () => {
      const factory = readSecret(env, 'VBI_FACTORY_SO_PIN');
      if (!factory) throw vbiError('CONFIG_INVALID', 'VBI_FACTORY_SO_PIN or VBI_FACTORY_SO_PIN_FILE must hold the factory SO PIN');
      return factory;
    },
  };
}
