/**
 * The `vbi` CLI's environment variables, all read here (the client layer does not import
 * packages/server/src/config: the SDK and the CLI ship without the service). `runCli` is given the environment
 * (packages/client/src/bin/vbi.ts passes process.env); the commands use what this returns.
 *
 *   VBI_SERVER        the server, when --server does not name one (else the key file's)
 *   VBI_KEY_FILE      the key file, when --key-file does not name one (else ~/.vbi/key.json)
 *   VBI_ROOT_CERT     the postal root certificate, when --root does not name one
 *   VBI_PASSWORD      the key file's password (else asked on the terminal)
 *   VBI_NEW_PASSWORD  `rekey --change-password`'s new password (else asked)
 *   VBI_DEBUG         set: an unexpected error's stack on stderr
 */
export interface CliEnvSettings {
  server?: string;
  keyFile?: string;
  rootCert?: string;
  password?: string;
  newPassword?: string;
  debug: boolean;
}

export function cliEnvSettings(env: Record<string, string | undefined>): CliEnvSettings {
  return {
    server: env.VBI_SERVER || undefined,
    keyFile: env.VBI_KEY_FILE || undefined,
    rootCert: env.VBI_ROOT_CERT || undefined,
    password: env.VBI_PASSWORD || undefined,
    newPassword: env.VBI_NEW_PASSWORD || undefined,
    debug: Boolean(env.VBI_DEBUG),
  };
}
