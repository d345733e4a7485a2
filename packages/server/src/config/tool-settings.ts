import { Config, loadConfig } from './config';

type Env = NodeJS.ProcessEnv;

/**
 * The configuration of an operator's tool that opens only the database (`npm run credentials`):
 * the service's, with no module PIN required (PKCS11_USER_PIN defaults to a placeholder it never uses).
 */
export function databaseToolConfig(env: Env): Config {
  return loadConfig({ ...env, PKCS11_USER_PIN: env.PKCS11_USER_PIN ?? 'unused-by-credentials' });
}

/** `npm run operator`: the operator's credential (VBI_OPERATOR_TOKEN) and the service it calls (VBI_SERVER). */
export interface OperatorSettings {
  token: string | undefined;
  /** The service's base URL, without a trailing slash (default http://127.0.0.1:8080). */
  server: string;
}

export function operatorSettings(env: Env): OperatorSettings {
  return { token: env.VBI_OPERATOR_TOKEN || undefined, server: (env.VBI_SERVER ?? 'http://127.0.0.1:8080').replace(/\/+$/, '') };
}
