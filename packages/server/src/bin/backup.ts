/**
 * npm run backup [-- --list]
 * Takes a base backup of the service's database with pg_basebackup (the embedded cluster, or the
 * DATABASE_URL server, which must archive its WAL), verifies it with pg_verifybackup and keeps it
 * in VBI_BACKUP_DIR (default var/backups). Runs beside the service. `--list` prints the backups.
 * docs/operations.md.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../config/config';
import { startEmbeddedPostgres } from '../db/embedded-postgres';
import { listBackups, takeBackup } from '../ops/backup';
import { withTranscript } from '../ops/transcript';
import { runMain } from '@vbi/core/cli/run-main';

async function main(): Promise<number> {
  const config = loadConfig();
  if (process.argv.includes('--list')) {
    const all = await listBackups(config.backupDir);
    for (const b of all) process.stdout.write(`${b.label}  finished ${b.finishedAt}  PostgreSQL ${b.serverVersion}  timeline ${b.timeline}\n`);
    if (all.length === 0) process.stdout.write(`no backups in ${config.backupDir}\n`);
    return 0;
  }
  return withTranscript({ dir: config.transcriptDir, procedure: 'backup', argv: process.argv.slice(2) }, async (t) => {
    let url = config.databaseUrl;
    let stop = async (): Promise<void> => undefined;
    if (!url) {
      const pgdata = join(config.varDir, 'pgdata');
      if (!existsSync(join(pgdata, 'PG_VERSION'))) throw new Error(`no embedded database in ${pgdata} (start the service once first)`);
      // shares the cluster the running service started, or starts it (archiving) for the backup
      const server = await startEmbeddedPostgres({ dataDir: pgdata, archive: config.walArchive });
      url = server.url;
      stop = server.stop;
    }
    try {
      const b = await takeBackup({ url, backupDir: config.backupDir, pgBinDir: config.pgBinDir });
      t.report(b);
      t.out(`backup ${b.label} verified: ${b.dataDir} (PostgreSQL ${b.serverVersion}, finished ${b.finishedAt})`);
      return 0;
    } finally {
      await stop();
    }
  });
}

runMain(main);
