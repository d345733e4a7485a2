import { ChildProcess, execFile, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

/** A free TCP port on 127.0.0.1 (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** What a script run printed, and its exit code. */
export interface ScriptRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * The service as an operator runs it — `node packages/server/dist/src/bin/main.js`, the `npm start` program — on
 * its own directory: its own SoftHSM2 token directory (dev module token, dev CA and vendor
 * tokens provisioned at the first start), its own embedded PostgreSQL in var/pgdata, fixed
 * ports. kill() is a SIGKILL of the node process (the embedded PostgreSQL lives on, as it does
 * after a real kill -9); killDatabase() is a SIGKILL of the postmaster as well.
 */
export class ServiceProcess {
  private child: ChildProcess | undefined;
  /** Extra environment for every start (e.g. VBI_AUTH_RATE_LIMIT for a benchmark). */
  env: NodeJS.ProcessEnv = {};
  /** Extra node options for the service process (e.g. --cpu-prof for a benchmark's profile). */
  nodeArgs: string[] = [];
  /** Arguments of the service program (e.g. `--workers 3`). */
  args: string[] = [];
  private output = '';
  readonly varDir: string;
  readonly url: string;

  private constructor(readonly dir: string, private readonly port: number, private readonly caPort: number) {
    this.varDir = join(dir, 'var');
    this.url = `http://127.0.0.1:${port}`;
  }

  static async create(dir: string): Promise<ServiceProcess> {
    mkdirSync(join(dir, 'tokens'), { recursive: true });
    chmodSync(dir, 0o711); // as root the embedded server runs as 'postgres', which must reach var/pgdata
    writeFileSync(join(dir, 'softhsm2.conf'), `directories.tokendir = ${join(dir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`);
    return new ServiceProcess(dir, await freePort(), await freePort());
  }

  /** The running service's process id. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** The postal root certificate of the dev CA (after the first start). */
  get rootPem(): string {
    return readFileSync(join(this.varDir, 'dev-ca', 'root.pem'), 'utf8');
  }

  /**
   * Starts the service and kills it (SIGKILL) after `ms`, wherever its start-up is then (token
   * login, ring reconcile, migrations, PKI, listening): a restart killed half way.
   */
  async startAndKill(ms: number): Promise<void> {
    const starting = this.start(120_000).catch(() => undefined);
    await new Promise((r) => setTimeout(r, ms));
    await this.kill();
    await starting;
  }

  /** Starts the service and waits until it listens; throws with its output if it does not within `timeoutMs`. */
  async start(timeoutMs = 90_000, extraEnv: NodeJS.ProcessEnv = {}): Promise<number> {
    const began = Date.now();
    this.output = '';
    const env = this.environment(extraEnv);
    const child = spawn(process.execPath, [...this.nodeArgs, join(__dirname, '..', 'bin', 'main.js'), ...this.args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout!.on('data', (b: Buffer) => (this.output += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (this.output += b.toString()));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => finish(new Error(`the service did not listen within ${timeoutMs} ms:\n${this.output}`)), timeoutMs);
      const poll = setInterval(() => {
        if (/^listening on /m.test(this.output)) finish();
      }, 25);
      const exited = (code: number | null) => finish(new Error(`the service exited (${code}) before listening:\n${this.output}`));
      child.once('exit', exited);
      function finish(e?: Error): void {
        clearTimeout(timer);
        clearInterval(poll);
        child.off('exit', exited);
        if (e) reject(e);
        else resolve();
      }
    });
    return Date.now() - began;
  }

  /** The service's environment: its own token directory, var directory and ports. */
  private environment(extraEnv: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
    // the caller's own database and token list are not the service's: only this.env may set them
    const inherited: NodeJS.ProcessEnv = { ...process.env };
    delete inherited.DATABASE_URL;
    delete inherited.PKCS11_TOKEN_LABELS;
    const env: NodeJS.ProcessEnv = {
      ...inherited,
      SOFTHSM2_CONF: join(this.dir, 'softhsm2.conf'), VBI_VAR_DIR: this.varDir, PORT: String(this.port), VBI_CA_PORT: String(this.caPort),
      HOST: '127.0.0.1', VBI_METER_POOL: '2', ...this.env, ...extraEnv,
    };
    if (!env.PKCS11_LIBRARY) {
      // as test/setup.ts does: the library scripts/bootstrap.sh found (npm test and npm run soak run it)
      const m = /^PKCS11_LIBRARY=(.*)$/m.exec(readFileSync(join(__dirname, '..', '..', '..', '..', '..', 'var', 'dev.env'), 'utf8'));
      if (m) env.PKCS11_LIBRARY = m[1];
    }
    return env;
  }

  /**
   * Runs one of the operator's programs (packages/server/dist/src/bin/<name>.js, what `npm run <name>` runs) with
   * the service's environment, as an operator on that host would.
   */
  runScript(name: string, args: string[] = [], extraEnv: NodeJS.ProcessEnv = {}): Promise<ScriptRun> {
    return this.runProgram(join(__dirname, '..', 'bin', `${name}.js`), args, extraEnv);
  }

  /** Runs the service program itself to its end (a start that is refused) with the service's environment. */
  runMain(args: string[] = [], extraEnv: NodeJS.ProcessEnv = {}): Promise<ScriptRun> {
    return this.runProgram(join(__dirname, '..', 'bin', 'main.js'), args, extraEnv);
  }

  /** Runs the key ceremony CLI (`npm run ceremony -- <args>`) with the service's environment. */
  runCeremony(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<ScriptRun> {
    return this.runProgram(join(__dirname, '..', 'bin', 'ceremony.js'), args, extraEnv);
  }

  private runProgram(program: string, args: string[], extraEnv: NodeJS.ProcessEnv): Promise<ScriptRun> {
    return new Promise((resolve) => {
      execFile(process.execPath, [program, ...args], { env: this.environment(extraEnv), maxBuffer: 16 << 20 },
        (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
    });
  }

  /** What the running (or last) service printed. */
  get log(): string {
    return this.output;
  }

  /** SIGTERM (an orderly shutdown begins), then SIGKILL after `ms` wherever the shutdown is. */
  async terminateThenKill(ms: number): Promise<void> {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, ms));
    await this.kill();
  }

  /** SIGTERM and wait for the orderly exit (a CPU profile is written then), SIGKILL after `ms`. */
  async terminate(ms = 10_000): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await Promise.race([gone, new Promise((r) => setTimeout(r, ms))]);
    await this.kill();
  }

  /** SIGKILL of the service (node) process; waits until it is gone. */
  async kill(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await gone;
  }

  /** SIGKILL of the embedded PostgreSQL postmaster (its backends then exit by themselves). */
  killDatabase(): boolean {
    const pid = this.postmasterPid();
    if (!pid) return false;
    try {
      process.kill(pid, 'SIGKILL');
      return true;
    } catch {
      return false;
    }
  }

  /** Stops everything: the service, then the embedded PostgreSQL (fast shutdown). */
  async stop(): Promise<void> {
    await this.kill();
    await this.signalDatabase('SIGINT');
  }

  /** SIGKILL of the postmaster, waiting until it is gone (its backends exit by themselves). */
  async killDatabaseAndWait(): Promise<void> {
    await this.signalDatabase('SIGKILL');
  }

  /** Signals the postmaster and waits (up to 10 s) until it has exited. */
  private async signalDatabase(signal: NodeJS.Signals): Promise<void> {
    const pid = this.postmasterPid();
    if (!pid) return;
    try {
      process.kill(pid, signal);
    } catch {
      return;
    }
    for (let i = 0; i < 200; i++) {
      try {
        process.kill(pid, 0);
      } catch {
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  postmasterPid(): number | undefined {
    const file = join(this.varDir, 'pgdata', 'postmaster.pid');
    if (!existsSync(file)) return undefined;
    const pid = Number(readFileSync(file, 'utf8').split('\n')[0]);
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  }
}
