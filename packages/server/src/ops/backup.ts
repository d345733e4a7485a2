import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { vbiError } from '@vbi/core/errors';
import { hasPgTool, pgToolPath, runTool, serverFacts, toolConnection } from '../db/pg-tools';

/**
 * Base backups taken with PostgreSQL's own pg_basebackup (docs/operations.md). Each backup is a
 * directory <backupDir>/<label>/ holding `data/` (the cluster in plain format, with the WAL it
 * needs to be consistent and a SHA-256 backup manifest) and `backup.json` (what restore needs to
 * choose it). A backup is written under <label>.partial and renamed only once pg_verifybackup
 * accepts it, so a listed backup is a complete one.
 */
export interface BackupInfo {
  label: string;
  /** ISO time before pg_basebackup began. */
  startedAt: string;
  /** ISO time after it finished and verified: the earliest recovery target it can serve. */
  finishedAt: string;
  serverVersion: string;
  serverMajor: number;
  systemIdentifier: string;
  timeline: number;
}

export interface ListedBackup extends BackupInfo {
  /** The cluster's directory in the backup. */
  dataDir: string;
}

const INFO_FILE = 'backup.json';

export async function takeBackup(opts: {
  url: string; backupDir: string; now?: () => Date;
  /** Where PostgreSQL's client tools are (VBI_PG_BINDIR; packages/server/src/db/pg-tools.ts). */
  pgBinDir?: string;
}): Promise<ListedBackup> {
  const now = opts.now ?? (() => new Date());
  const facts = await serverFacts(opts.url);
  if (facts.archiveMode !== 'on' && facts.archiveMode !== 'always') {
    throw vbiError('WAL_ARCHIVE_OFF', `archive_mode is '${facts.archiveMode}' on the server: set archive_mode and archive_command (docs/operations.md)`);
  }
  const basebackup = pgToolPath('pg_basebackup', facts.major, opts.pgBinDir);
  const started = now();
  const label = `base-${started.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}`;
  const final = join(opts.backupDir, label);
  const partial = `${final}.partial`;
  if (existsSync(final)) throw vbiError('BACKUP_FAILED', `${final} already exists`);
  await mkdir(opts.backupDir, { recursive: true, mode: 0o700 });
  await rm(partial, { recursive: true, force: true });
  await mkdir(partial, { mode: 0o700 });
  const { connString, env } = toolConnection(opts.url);
  const dataDir = join(partial, 'data');
  try {
    // plain format (pg_verifybackup reads it), the WAL streamed alongside (the backup is
    // consistent on its own), an immediate checkpoint, a SHA-256 manifest
    await runTool(basebackup, ['-d', connString, '-D', dataDir, '-Fp', '-X', 'stream', '-c', 'fast', '-l', label, '--manifest-checksums=SHA256', '--no-password'], env);
    await verifyBackupData(dataDir, facts.major, opts.pgBinDir);
  } catch (e) {
    if ((e as { code?: string }).code === 'PG_TOOLS_MISSING' || (e as { code?: string }).code === 'BACKUP_FAILED') throw e;
    throw vbiError('BACKUP_FAILED', (e as Error).message, { output: (e as { output?: string }).output });
  }
  const info: BackupInfo = {
    label, startedAt: started.toISOString(), finishedAt: now().toISOString(),
    serverVersion: facts.version, serverMajor: facts.major, systemIdentifier: facts.systemIdentifier, timeline: facts.timeline,
  };
  await writeFile(join(partial, INFO_FILE), JSON.stringify(info, null, 2) + '\n', { mode: 0o600 });
  await rename(partial, final);
  return { ...info, dataDir: join(final, 'data') };
}

/**
 * pg_verifybackup: every file against the manifest's SHA-256, and the WAL the backup needs
 * parsed when pg_waldump of that version is installed (it comes with the server package).
 */
export async function verifyBackupData(dataDir: string, major: number, pgBinDir?: string): Promise<void> {
  const args = hasPgTool('pg_waldump', major, pgBinDir) ? [dataDir] : ['--no-parse-wal', dataDir];
  try {
    await runTool(pgToolPath('pg_verifybackup', major, pgBinDir), args);
  } catch (e) {
    if ((e as { code?: string }).code === 'PG_TOOLS_MISSING') throw e;
    throw vbiError('BACKUP_FAILED', `backup in ${dataDir} does not verify`, { output: (e as { output?: string }).output });
  }
}

/** The complete backups in backupDir, oldest first (partial ones are not listed). */
export async function listBackups(backupDir: string): Promise<ListedBackup[]> {
  if (!existsSync(backupDir)) return [];
  const out: ListedBackup[] = [];
  for (const name of await readdir(backupDir)) {
    const file = join(backupDir, name, INFO_FILE);
    if (name.endsWith('.partial') || !existsSync(file)) continue;
    const info = JSON.parse(await readFile(file, 'utf8')) as BackupInfo;
    out.push({ ...info, dataDir: join(backupDir, name, 'data') });
  }
  return out.sort((a, b) => a.finishedAt.localeCompare(b.finishedAt));
}
