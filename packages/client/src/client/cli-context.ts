import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { vbiError } from '@vbi/core/errors';
import { toPem } from '@vbi/core/pki/pem';
import { cliEnvSettings, type CliEnvSettings } from './cli-config';
import { PasswordUnavailable, promptPassword } from './cli-password';
import type { FetchFn } from './http';
import { VbiClient, VbiClientOptions } from './vbi-client';

/** The default server when neither --server, VBI_SERVER nor the key file names one. */
export const DEFAULT_SERVER = 'http://127.0.0.1:8080';

/** A wrong command line: printed with the usage text, exit status 2. */
export class UsageError extends Error {
  readonly code = 'USAGE';
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** What a CLI run may touch; all injectable for tests. */
export interface CliIo {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown; isTTY?: boolean };
  env: NodeJS.ProcessEnv;
  cwd: string;
  fetch?: FetchFn;
  clock?: () => number;
  /** Asks for a password (no echo); default: the terminal. */
  prompt?: (prompt: string) => Promise<string>;
}

/** The options every command understands. */
export interface GlobalOptions {
  server?: string;
  'key-file'?: string;
  root?: string;
}

/** Resolved settings and helpers shared by the commands. */
export class CliContext {
  /** What the environment says (packages/client/src/client/cli-config.ts). */
  readonly settings: CliEnvSettings;

  constructor(readonly io: CliIo, readonly opts: GlobalOptions) {
    this.settings = cliEnvSettings(io.env);
  }

  /** --server, else VBI_SERVER; undefined means "what the key file says". */
  get serverOverride(): string | undefined {
    return this.opts.server ?? this.settings.server;
  }

  /** --key-file, else VBI_KEY_FILE, else ~/.vbi/key.json. */
  get keyFilePath(): string {
    const p = this.opts['key-file'] ?? (this.settings.keyFile ?? join(homedir(), '.vbi', 'key.json'));
    return resolve(this.io.cwd, p);
  }

  /**
   * The postal root certificate as PEM: --root, else VBI_ROOT_CERT, else certs/postal-root.pem
   * if present, else var/dev-ca/root.pem (each looked up in the working directory, then in the
   * project's root, for a development checkout). DER files are converted.
   */
  rootCertPem(): string {
    const given = this.opts.root ?? this.settings.rootCert;
    const candidates = given !== undefined
      ? [resolve(this.io.cwd, given)]
      : ['certs/postal-root.pem', 'var/dev-ca/root.pem'].flatMap((p) => [resolve(this.io.cwd, p), resolve(__dirname, '..', '..', '..', '..', '..', p)]);
    const found = candidates.find((p) => existsSync(p));
    if (!found) throw new UsageError(given !== undefined ? `root certificate ${given} not found` : 'no root certificate: give --root or VBI_ROOT_CERT (looked for certs/postal-root.pem and var/dev-ca/root.pem)');
    const bytes = readFileSync(found);
    return bytes.includes('-----BEGIN CERTIFICATE-----') ? bytes.toString('utf8') : toPem('CERTIFICATE', bytes);
  }

  /** VBI_PASSWORD (unless `ignoreEnv`), else asked on the terminal (twice when `confirm`). */
  async password(opts: { confirm?: boolean; ignoreEnv?: boolean } = {}): Promise<string> {
    const env = this.settings.password;
    if (!opts.ignoreEnv && env !== undefined) return env;
    const ask = this.io.prompt ?? ((p: string) => promptPassword(p));
    try {
      const first = await ask(opts.confirm ? 'New key file password: ' : 'Key file password: ');
      if (!opts.confirm) return first;
      if (first.length < 8) throw new UsageError('the password must have at least 8 characters');
      if ((await ask('Repeat the password: ')) !== first) throw new UsageError('the passwords differ');
      return first;
    } catch (e) {
      if (e instanceof PasswordUnavailable) throw new UsageError(e.message);
      throw e;
    }
  }

  /** Opens the key file and returns a client (NOT_REGISTERED before asking for a password when there is none). */
  async client(opts: Pick<VbiClientOptions, 'onRecovered'> = {}): Promise<VbiClient> {
    if (!existsSync(this.keyFilePath)) throw vbiError('NOT_REGISTERED', `no key file at ${this.keyFilePath} (run vbi register, or give --key-file)`);
    return VbiClient.open({
      keyFilePath: this.keyFilePath, password: await this.password(), baseUrl: this.serverOverride,
      fetch: this.io.fetch, clock: this.io.clock, ...opts,
    });
  }

  /** One line to stdout. */
  say(line = ''): void {
    this.io.stdout.write(`${line}\n`);
  }

  /** One line to stderr. */
  warn(line: string): void {
    this.io.stderr.write(`${line}\n`);
  }
}
