/**
 * npm run restore -- --to latest|<time> [--backup LABEL] [--pgdata DIR]
 * Point-in-time recovery (docs/operations.md): replaces the embedded cluster (var/pgdata, renamed
 * aside, never deleted) with the newest verified base backup that finished before <time>, replays
 * the WAL archive up to <time> (an ISO 8601 time with its zone, e.g. 2026-12-01T23:40:00Z) or to
 * its end (`latest`), and lets the server promote itself. The service must be stopped.
 * With DATABASE_URL, --pgdata names the data directory of that server (on its host, server
 * stopped): restore prepares it, and the operator starts the server, which then recovers.
 */
import { join } from 'node:path';
import { loadConfig } from '../config/config';
import { parseTarget, restore } from '../ops/restore';
import { vbiError } from '@vbi/core/errors';
import { withTranscript } from '../ops/transcript';
import { runMain } from '@vbi/core/cli/run-main';

function option(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<number> {
  const config = loadConfig();
  const target = parseTarget(option('--to'));
  const pgdata = option('--pgdata');
  if (config.databaseUrl && !pgdata) {
    throw vbiError('BAD_REQUEST', 'DATABASE_URL is set: name the data directory of that server with --pgdata (docs/operations.md)');
  }
  return withTranscript({ dir: config.transcriptDir, procedure: 'restore', argv: process.argv.slice(2) }, async (t) => {
    const report = await restore({
      backupDir: config.backupDir, archive: config.walArchive, target, backupLabel: option('--backup'),
      pgdata: pgdata ?? join(config.varDir, 'pgdata'), runRecovery: !pgdata, log: config.dbLog, pgBinDir: config.pgBinDir,
    });
    t.report(report);
    t.out(`restored backup ${report.backup} to ${report.target}`);
    if (report.replacedDir) t.out(`the replaced data directory is kept in ${report.replacedDir}`);
    if (report.timeline !== undefined) {
      t.out(`recovery finished: timeline ${report.timeline}, WAL at ${report.walLsn}; start the service (it reconciles every module's ring with the restored database)`);
    } else {
      t.out('start the PostgreSQL server on that directory: it recovers from the archive, then promotes');
    }
    return 0;
  });
}

runMain(main);
