import { existsSync } from 'node:fs';
import { appendFile, chmod, cp, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Client } from 'pg';
import { vbiError } from '@vbi/core/errors';
import { postmasterAlive, startEmbeddedPostgres } from '../db/embedded-postgres';
import { restoreCommand, type WalArchiveSettings } from '../db/wal-archive';
import { giveToServerUser } from '../db/pg-tools';
import { listBackups, verifyBackupData, type ListedBackup } from './backup';

/**
 * Point-in-time recovery with PostgreSQL's own archive recovery (docs/operations.md): the newest
 * verified base backup that finished before the target, then the WAL archive replayed up to the
 * target (or to its end, `latest`), then the server promotes itself to a new timeline.
 *
 * The data directory being replaced is renamed aside, never deleted. Whether the restored
 * database may serve is not decided here: at its next start the service reconciles every module's
 * ring with it, and a database that lacks committed work the rings hold keeps those modules
 * inhibited until an officer decides (docs/checkpoint.md).
 */
export type RecoveryTarget = 'latest' | Date;

/** `latest`, or an ISO 8601 time that names its zone (a time without one would be read in the server's). */
export function parseTarget(raw: string | undefined): RecoveryTarget {
  if (raw === 'latest') return 'latest';
  if (raw === undefined || !/(Z|[+-]\d\d:?\d\d)$/.test(raw) || Number.isNaN(Date.parse(raw))) {
    throw vbiError('BAD_REQUEST', "--to takes 'latest' or an ISO 8601 time with its zone (e.g. 2026-12-01T23:40:00Z)");
  }
  return new Date(raw);
}

export interface RestoreOptions {
  backupDir: string;
  archive: WalArchiveSettings;
  /** The data directory to restore into (the embedded cluster's <varDir>/pgdata). */
  pgdata: string;
  target: RecoveryTarget;
  /** A backup by label instead of the newest suitable one. */
  backupLabel?: string;
  /**
   * Start the restored cluster as the embedded server, wait for recovery to finish and stop it
   * (true); or only prepare the directory for a server the operator starts (false).
   */
  runRecovery: boolean;
  /** The restored server's output on stderr (VBI_DB_LOG=1, read by packages/server/src/config). */
  log?: boolean;
  /** Where PostgreSQL's client tools are (VBI_PG_BINDIR; packages/server/src/db/pg-tools.ts). */
  pgBinDir?: string;
  now?: () => Date;
}

export interface RestoreReport {
  backup: string;
  target: string;
  /** Where the replaced data directory now is (undefined when there was none). */
  replacedDir?: string;
  /** After recovery (runRecovery): the new timeline and the last WAL position. */
  timeline?: number;
  walLsn?: string;
}

/** The recovery settings restore adds, removed again once recovery has finished. */
const RECOVERY_SETTINGS = ['restore_command', 'recovery_target_time', 'recovery_target_action', 'recovery_target_timeline'];

export async function restore(opts: RestoreOptions): Promise<RestoreReport> {
  const now = opts.now ?? (() => new Date());
  const pgdata = resolve(opts.pgdata);
  const backup = await chooseBackup(opts.backupDir, opts.target, opts.backupLabel);
  if (await postmasterAlive(pgdata)) {
    throw vbiError('DATABASE_RUNNING', `a PostgreSQL server still runs on ${pgdata} (postmaster.pid)`);
  }
  await verifyBackupData(backup.dataDir, backup.serverMajor, opts.pgBinDir);

  let replacedDir: string | undefined;
  if (existsSync(pgdata)) {
    replacedDir = `${pgdata}.replaced-${now().toISOString().replace(/[-:.]/g, '')}`;
    await rename(pgdata, replacedDir);
  }
  await cp(backup.dataDir, pgdata, { recursive: true, preserveTimestamps: true });
  await chmod(pgdata, 0o700);
  // the manifest describes the backup, not the cluster it becomes
  await rm(join(pgdata, 'backup_manifest'), { force: true });
  const settings = [
    `restore_command = ${confString(restoreCommand(opts.archive.dir))}`,
    `recovery_target_timeline = 'latest'`,
    ...(opts.target === 'latest' ? [] : [`recovery_target_time = ${confString(pgTime(opts.target))}`, `recovery_target_action = 'promote'`]),
  ];
  await appendFile(join(pgdata, 'postgresql.auto.conf'), `\n# added by npm run restore (${now().toISOString()}), removed after recovery\n${settings.join('\n')}\n`);
  await writeFile(join(pgdata, 'recovery.signal'), '');
  await giveToServerUser(pgdata);
  const report: RestoreReport = { backup: backup.label, target: opts.target === 'latest' ? 'latest' : opts.target.toISOString(), replacedDir };
  if (!opts.runRecovery) return report;

  let server;
  try {
    // "ready to accept connections" comes once recovery reached its target and promoted
    server = await startEmbeddedPostgres({ dataDir: pgdata, archive: opts.archive, log: opts.log });
  } catch (e) {
    throw vbiError('RESTORE_FAILED', `recovery of ${backup.label} to ${report.target} did not finish`, { log: (e as Error).message });
  }
  try {
    const client = new Client({ connectionString: server.url });
    await client.connect();
    try {
      const { rows: [r] } = await client.query(
        `SELECT pg_is_in_recovery() AS recovering, pg_current_wal_lsn()::text AS lsn, (SELECT timeline_id FROM pg_control_checkpoint()) AS tl`,
      );
      if (r.recovering) throw vbiError('RESTORE_FAILED', 'the restored server is still in recovery');
      for (const s of RECOVERY_SETTINGS) await client.query(`ALTER SYSTEM RESET ${s}`);
      // a checkpoint records the new timeline in pg_control
      await client.query('CHECKPOINT');
      const { rows: [c] } = await client.query(`SELECT (SELECT timeline_id FROM pg_control_checkpoint()) AS tl`);
      report.timeline = Number(c.tl ?? r.tl);
      report.walLsn = r.lsn as string;
    } finally {
      await client.end();
    }
  } finally {
    await server.stop();
  }
  return report;
}

/** The named backup, or the newest one that finished before the target (any, for `latest`). */
async function chooseBackup(backupDir: string, target: RecoveryTarget, label?: string): Promise<ListedBackup> {
  const all = await listBackups(backupDir);
  if (label !== undefined) {
    const b = all.find((x) => x.label === label);
    if (!b) throw vbiError('NO_BACKUP', `no complete backup '${label}' in ${backupDir}`);
    if (target !== 'latest' && Date.parse(b.finishedAt) > target.getTime()) {
      throw vbiError('NO_BACKUP', `backup ${label} finished at ${b.finishedAt}, after the target ${target.toISOString()}`);
    }
    return b;
  }
  const fit = all.filter((b) => target === 'latest' || Date.parse(b.finishedAt) <= target.getTime());
  const b = fit[fit.length - 1];
  if (!b) throw vbiError('NO_BACKUP', `no complete backup in ${backupDir} finished before ${target === 'latest' ? 'now' : target.toISOString()}`);
  return b;
}

/** '2026-12-01 23:40:00.123+00': recovery_target_time does not take the ISO 8601 'T'/'Z' form. */
function pgTime(t: Date): string {
  return t.toISOString().replace('T', ' ').replace('Z', '+00');
}

/** A string value in postgresql.conf syntax: single quotes, an embedded quote doubled. */
function confString(v: string): string {
  return `'${v.replace(/'/g, "''")}'`;
}

