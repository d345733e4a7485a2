import { join } from 'node:path';
import { vbiError } from '@vbi/core/errors';
import { DEV_CA_LABEL } from '../pki/dev';
import { Config, DEV_USER_PIN, loadConfig, readSecret } from './config';

type Env = Record<string, string | undefined>;

/**
 * The dev/test postal CA process's settings (packages/server/src/bin/postal-ca.ts), from the environment:
 *   VBI_CA_DIR (default <varDir>/ca), VBI_CA_PORT (default 8444), VBI_CA_HOST (default 127.0.0.1),
 *   VBI_CA_USER_PIN[_FILE] (the dev CA token 'vbi-dev-ca' falls back to the dev PIN),
 * and the service's PKCS#11 library settings (loadConfig; the CA needs no module PIN).
 */
export interface CaSettings {
  config: Config;
  dir: string;
  host: string;
  port: number;
  /** The user PIN of the CA token `tokenLabel` (read when the CA directory has named its token). */
  userPin(tokenLabel: string): string;
}

export function caSettings(env: Env, root = process.cwd()): CaSettings {
  const config = loadConfig({ ...env, PKCS11_USER_PIN: env.PKCS11_USER_PIN ?? 'unused-by-ca' }, root);
  return {
    config,
    dir: env.VBI_CA_DIR ?? join(config.varDir, 'ca'),
    host: env.VBI_CA_HOST ?? '127.0.0.1',
    port: Number(env.VBI_CA_PORT ?? 8444),
    userPin(tokenLabel) {
      const userPin = readSecret(env, 'VBI_CA_USER_PIN') ?? (tokenLabel === DEV_CA_LABEL ? DEV_USER_PIN : undefined);
      if (!userPin) throw vbiError('CONFIG_INVALID', `VBI_CA_USER_PIN or VBI_CA_USER_PIN_FILE must hold the PIN of CA token '${tokenLabel}'`);
      return userPin;
    },
  };
}
