import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Client } from 'pg';
import { vbiError } from '@vbi/core/errors';
import { postgresUserIds } from './wal-archive';

/**
 * PostgreSQL's own client tools (pg_basebackup, pg_verifybackup) of the server's major version:
 * pg_basebackup refuses a server newer than itself, and an older server's backups are best read
 * by the tools of its own version. Debian installs each major version's tools in
 * /usr/lib/postgresql/<major>/bin (package postgresql-client-<major>); `binDir` (VBI_PG_BINDIR,
 * read by packages/server/src/config) overrides.
 */
export function pgToolPath(tool: string, major: number, binDir?: string): string {
  const dir = binDir || `/usr/lib/postgresql/${major}/bin`;
  const path = join(dir, tool);
  if (!existsSync(path)) {
    throw vbiError('PG_TOOLS_MISSING', `${path} not found: install postgresql-client-${major} (or set VBI_PG_BINDIR)`, { tool, major });
  }
  return path;
}

export function hasPgTool(tool: string, major: number, binDir?: string): boolean {
  return existsSync(join(binDir || `/usr/lib/postgresql/${major}/bin`, tool));
}

/** Server facts a backup records: major version, system identifier, archive mode. */
export interface ServerFacts {
  major: number;
  version: string;
  systemIdentifier: string;
  archiveMode: string;
  timeline: number;
}

export async function serverFacts(url: string): Promise<ServerFacts> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query(
      `SELECT current_setting('server_version_num')::int AS num, current_setting('server_version') AS version,
              current_setting('archive_mode') AS archive_mode,
              (SELECT system_identifier::text FROM pg_control_system()) AS system_identifier,
              (SELECT timeline_id FROM pg_control_checkpoint()) AS timeline`,
    );
    const r = rows[0] as { num: number; version: string; archive_mode: string; system_identifier: string; timeline: number };
    return { major: Math.floor(r.num / 10000), version: r.version, systemIdentifier: r.system_identifier, archiveMode: r.archive_mode, timeline: r.timeline };
  } finally {
    await client.end();
  }
}

/**
 * A connection string for the client tools: the password travels in PGPASSWORD, not on the
 * command line (where `ps` would show it).
 */
export function toolConnection(url: string): { connString: string; env: NodeJS.ProcessEnv } {
  const u = new URL(url);
  const password = decodeURIComponent(u.password);
  u.password = '';
  return { connString: u.toString(), env: password ? { PGPASSWORD: password } : {} };
}

/** Runs a tool; resolves with its output, rejects with an Error carrying stdout+stderr. */
export function runTool(path: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(path, args, { env: { ...process.env, ...env }, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const output = `${stdout}${stderr}`.trim();
      if (err) reject(Object.assign(new Error(`${path} ${args.join(' ')} failed: ${output || err.message}`), { output }));
      else resolve(output);
    });
  });
}

/**
 * As root, the embedded server runs as the system user `postgres`: a data directory written by
 * root (a restored backup, a standby's base backup) is given to it, mode 0700.
 */
export async function giveToServerUser(dataDir: string): Promise<void> {
  await chmod(dataDir, 0o700);
  if (process.getuid?.() !== 0) return;
  const owner = await postgresUserIds();
  await chownTree(dataDir, owner.uid, owner.gid);
}

async function chownTree(path: string, uid: number, gid: number): Promise<void> {
  await chown(path, uid, gid);
  if (!(await stat(path)).isDirectory()) return;
  for (const name of await readdir(path)) await chownTree(join(path, name), uid, gid);
}
