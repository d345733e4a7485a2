import { execFile } from 'node:child_process';
import { chown, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { vbiError } from '@vbi/core/errors';

/**
 * Continuous WAL archiving (PostgreSQL's point-in-time recovery, docs/operations.md): the server
 * copies every finished WAL segment into the archive directory, and a base backup plus the
 * archive restore the cluster to any moment after that backup.
 */
export interface WalArchiveSettings {
  /** Where finished WAL segments are copied (VBI_WAL_ARCHIVE_DIR; default <varDir>/wal-archive). */
  dir: string;
  /**
   * archive_timeout: a segment with any traffic is switched and archived after at most this many
   * seconds (VBI_ARCHIVE_TIMEOUT, default 60). It bounds how much committed work the archive can
   * lack when the database's disk is lost.
   */
  timeoutSeconds: number;
}

/** The archive when the configuration names none: <varDir>/wal-archive, archive_timeout 60 s. */
export function defaultWalArchive(varDir: string): WalArchiveSettings {
  return { dir: join(varDir, 'wal-archive'), timeoutSeconds: 60 };
}

/**
 * The archive_command: copy under a temporary name, fsync, rename, fsync the directory, so the
 * archive never holds a torn segment under its real name. A segment already archived with the
 * same bytes succeeds (PostgreSQL retries a segment whose earlier copy it did not see finish); one
 * with other bytes fails, and the server keeps the segment and retries, never overwriting.
 */
export function archiveCommand(dir: string): string {
  const d = archivePath(dir);
  const tmp = `'${d}/%f.copying'`;
  return `test ! -f '${d}/%f' && cp '%p' ${tmp} && sync ${tmp} && mv ${tmp} '${d}/%f' && sync '${d}' || cmp -s '%p' '${d}/%f'`;
}

/** The restore_command of a recovery from this archive. */
export function restoreCommand(dir: string): string {
  return `cp '${archivePath(dir)}/%f' '%p'`;
}

export function archiveFlags(s: WalArchiveSettings): string[] {
  return ['-c', 'archive_mode=on', '-c', `archive_command=${archiveCommand(s.dir)}`, '-c', `archive_timeout=${s.timeoutSeconds}`];
}

/** Absolute path, refusing what the shell quoting or PostgreSQL's % escapes would change. */
function archivePath(dir: string): string {
  const d = resolve(dir);
  if (/['%\n]/.test(d)) throw vbiError('CONFIG_INVALID', `the WAL archive path may not contain ', % or a newline: ${d}`);
  return d;
}

/** Creates the archive directory (mode 0700), owned by the server's user when that is not us. */
export async function prepareArchiveDir(dir: string, owner?: { uid: number; gid: number }): Promise<void> {
  const d = archivePath(dir);
  await mkdir(d, { recursive: true, mode: 0o700 });
  if (owner) await chown(d, owner.uid, owner.gid);
}

/** uid and gid of the system user `postgres` (the server's user when we run as root). */
export async function postgresUserIds(): Promise<{ uid: number; gid: number }> {
  const run = promisify(execFile);
  const [u, g] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]);
  return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
}
