import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Client } from 'pg';
import { DATABASE_NAME, EmbeddedPostgres, PASSWORD_FILE, SUPERUSER, embeddedBinary } from './embedded-postgres';
import { postgresUserIds } from './wal-archive';
import { giveToServerUser, pgToolPath, runTool, serverFacts, toolConnection } from './pg-tools';

/**
 * A streaming standby of a server, made with PostgreSQL's own tools (docs/operations.md, "A
 * standby and failover"): `pg_basebackup -R` copies the primary into `dataDir` with
 * `standby.signal` and `primary_conninfo`, so a server started on it follows the primary. Used for
 * development and the failover test, with two embedded servers from the same binaries; production
 * uses its own replication management (Patroni, or the cloud's managed failover).
 */
export async function createStandby(req: {
  primaryUrl: string; dataDir: string;
  /** Where PostgreSQL's client tools are (VBI_PG_BINDIR, read by packages/server/src/config; pg-tools.ts). */
  pgBinDir?: string;
}): Promise<void> {
  const { major } = await serverFacts(req.primaryUrl);
  const conn = toolConnection(req.primaryUrl);
  await runTool(pgToolPath('pg_basebackup', major, req.pgBinDir), ['-d', conn.connString, '-D', req.dataDir, '-X', 'stream', '-R', '-c', 'fast'], conn.env);
  await giveToServerUser(req.dataDir);
}

/**
 * Starts the embedded binaries' server on a standby's data directory. (The embedded package's own
 * start waits for the log line of a primary, which a standby never prints, so the server is
 * started here and ready once it answers.) As root it runs as the system user `postgres`.
 */
export async function startStandbyServer(req: {
  dataDir: string; port: number;
  /** The server's output on stderr (VBI_DB_LOG=1, read by packages/server/src/config); unset: ignored. */
  log?: boolean;
}): Promise<EmbeddedPostgres> {
  const password = (await readFile(join(req.dataDir, PASSWORD_FILE), 'utf8')).trim();
  const owner = process.getuid?.() === 0 ? await postgresUserIds() : undefined;
  const child = spawn(embeddedBinary('postgres'), ['-D', req.dataDir, '-p', String(req.port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='], {
    stdio: req.log === true ? 'inherit' : 'ignore', ...(owner ?? {}),
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `postgres://${SUPERUSER}:${password}@127.0.0.1:${req.port}/${DATABASE_NAME}`;
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
    await exited;
  };
  for (let i = 0; ; i++) {
    const c = new Client({ connectionString: url, connectionTimeoutMillis: 1_000 });
    c.on('error', () => undefined);
    try {
      await c.connect();
      await c.end();
      return { url, stop };
    } catch (e) {
      await c.end().catch(() => undefined);
      if (i >= 300 || child.exitCode !== null) {
        await stop();
        throw new Error(`the standby server on ${req.dataDir} did not start: ${(e as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/**
 * Makes every commit on the primary wait until a standby has flushed it (synchronous_commit on,
 * synchronous_standby_names '*'): an indicium released to a client is on both servers.
 */
export async function requireSynchronousStandby(primaryUrl: string): Promise<void> {
  await withClient(primaryUrl, async (c) => {
    await c.query("ALTER SYSTEM SET synchronous_standby_names = '*'");
    await c.query('ALTER SYSTEM SET synchronous_commit = on');
    await c.query('SELECT pg_reload_conf()');
  });
}

/** The standbys the primary streams to synchronously now (pg_stat_replication). */
export async function synchronousStandbys(primaryUrl: string): Promise<number> {
  return withClient(primaryUrl, async (c) => Number((await c.query("SELECT count(*) AS n FROM pg_stat_replication WHERE sync_state = 'sync'")).rows[0].n));
}

/** Promotes a standby to primary and waits until it accepts writes. */
export async function promote(standbyUrl: string): Promise<void> {
  await withClient(standbyUrl, async (c) => {
    await c.query('SELECT pg_promote(true, 60)');
  });
}

async function withClient<T>(url: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}
