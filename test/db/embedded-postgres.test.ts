import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import { EmbeddedPostgres, startEmbeddedPostgres } from '@vbi/server/db/embedded-postgres';

/**
 * Restarts of the embedded PostgreSQL after the things a crash leaves behind: a postmaster.pid
 * naming a dead process, a zombie, or a live process that is not a postmaster, with nothing on
 * its port; a postmaster killed with SIGKILL. Each start must come up on the same data; a data
 * directory the server's user cannot reach fails at once, naming the directory.
 */
describe('embedded PostgreSQL restarts (real server binaries)', function () {
  this.timeout(180_000);
  const root = mkdtempSync(join(process.env.VBI_TEST_ROOT as string, 'pg-restart-'));
  const dataDir = join(root, 'pgdata');
  let pg: EmbeddedPostgres | undefined;

  const query = async (url: string): Promise<number> => {
    const c = new Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query('SELECT count(*)::int AS n FROM marks')).rows[0].n;
    } finally {
      await c.end();
    }
  };
  const pidFile = () => join(dataDir, 'postmaster.pid');
  /** A postmaster.pid as a crashed server leaves it, naming `pid` and a port nobody listens on. */
  const stalePidFile = (pid: number) => {
    const lines = readFileSync(pidFile(), 'utf8').split('\n');
    lines[0] = String(pid);
    lines[3] = '1';
    writeFileSync(pidFile(), lines.join('\n'));
  };
  const restartAfter = async (leaveBehind: () => Promise<void> | void): Promise<void> => {
    const before = readFileSync(pidFile(), 'utf8');
    await pg?.stop();
    writeFileSync(pidFile(), before); // as if the server had died without removing it
    await leaveBehind();
    pg = await startEmbeddedPostgres({ dataDir });
    expect(await query(pg.url)).to.equal(1);
  };

  before(async () => {
    // the run's root is private (mkdtemp): let the postgres user through, as it is for var/
    const testRoot = process.env.VBI_TEST_ROOT as string;
    chmodSync(testRoot, statSync(testRoot).mode | 0o001);
    chmodSync(root, 0o711);
    pg = await startEmbeddedPostgres({ dataDir });
    const c = new Client({ connectionString: pg.url });
    await c.connect();
    await c.query('CREATE TABLE marks (n int)');
    await c.query('INSERT INTO marks VALUES (1)');
    await c.end();
  });
  after(async () => {
    await pg?.stop();
  });

  it('a postmaster.pid whose process is gone', async () => {
    await restartAfter(() => stalePidFile(2 ** 22 - 3));
  });

  it('a postmaster.pid whose PID now belongs to an unrelated live process (this one), port closed', async () => {
    await restartAfter(() => stalePidFile(process.pid));
  });

  it('a postmaster.pid naming a zombie', async () => {
    // sh starts a child that exits shortly after sh has become `sleep`, which never reaps it
    // (a child exiting before the exec could be reaped by sh itself)
    const holder = spawn('sh', ['-c', 'sleep 0.3 & echo $!; exec sleep 60'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const zombie = await new Promise<number>((resolve) => holder.stdout.once('data', (d) => resolve(Number(String(d).trim()))));
      await new Promise((r) => setTimeout(r, 800));
      expect(readFileSync(`/proc/${zombie}/stat`, 'utf8')).to.match(/\) Z /);
      await restartAfter(() => stalePidFile(zombie));
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('a postmaster killed with SIGKILL: the next start recovers the same data', async () => {
    const pid = Number(readFileSync(pidFile(), 'utf8').split('\n')[0]);
    process.kill(pid, 'SIGKILL');
    // its backends notice the postmaster is gone and exit
    await new Promise((r) => setTimeout(r, 1_500));
    pg = await startEmbeddedPostgres({ dataDir });
    expect(await query(pg.url)).to.equal(1);
  });

  it('as root, a data directory behind a directory the postgres user cannot enter fails at once, naming it', async function () {
    if (process.getuid?.() !== 0) this.skip();
    const privateDir = join(root, 'private');
    mkdirSync(join(privateDir, 'inner'), { recursive: true });
    chmodSync(privateDir, 0o700);
    const t0 = Date.now();
    const err = await startEmbeddedPostgres({ dataDir: join(privateDir, 'inner', 'pgdata') }).then(() => null, (e: Error) => e);
    expect(err?.message).to.contain(privateDir).and.contain('chmod o+x');
    expect(Date.now() - t0).to.be.below(5_000);
  });
});
