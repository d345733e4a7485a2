import { expect } from 'chai';
import { chmodSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import { requireFreeSlots } from '../helpers/hsm';
import { ServiceProcess } from '@vbi/server/ops/service-process';
import { VbiClient } from '@vbi/client/client/vbi-client';
import { isVbiError } from '@vbi/core/errors';
import { openDatabase } from '@vbi/server/db/database';
import { conservation } from '@vbi/server/ledger/conservation';
import { listBackups } from '@vbi/server/ops/backup';
import { parseTarget } from '@vbi/server/ops/restore';
import type { OpsTranscript } from '@vbi/server/ops/transcript';

/**
 * Backup and point-in-time recovery as an operator runs them (docs/operations.md): the real
 * service program with its embedded PostgreSQL archiving its WAL, mailers working through the
 * SDK, `npm run backup` and `npm run restore` (their programs, with the service's environment).
 * The database's directory is then lost (SIGKILL of the server and `rm -rf`) and restored; what
 * the mailers hold must match what the restored database says, and a restore to a moment before
 * work the module rings already hold must keep the modules inhibited.
 */
describe('backup and point-in-time recovery (pg_basebackup, the WAL archive, the real service)', function () {
  this.timeout(10 * 60_000);
  const root = process.env.VBI_TEST_ROOT as string;
  const password = 'correct horse battery staple';
  let dir: string;
  let service: ServiceProcess;
  const mailers: Array<{ client: VbiClient; keyFilePath: string }> = [];
  /** A moment after the backup and before the traffic that follows it. */
  let betweenBackupAndLaterWork: Date;
  /** The registers each mailer's key file holds after the later work. */
  const held = new Map<string, { ascending: number; descending: number }>();

  before(async function () {
    requireFreeSlots(this);
    dir = mkdtempSync(join(root, 'backup-'));
    chmodSync(root, statSync(root).mode | 0o001);
    service = await ServiceProcess.create(dir);
    service.env = { VBI_ARCHIVE_TIMEOUT: '3600' }; // the tests switch WAL segments themselves
    await service.start();
    for (let i = 0; i < 2; i++) {
      const keyFilePath = join(dir, `mailer-${i}.key`);
      const client = await VbiClient.register({
        baseUrl: service.url, rootCertPem: service.rootPem, name: `Backup ${i}`, licensingZip: '20260', returnAddress: ['Backup', '1 Main St'],
        password, keyFilePath,
      });
      await client.buy({ amount: 100_000, payment: { kind: 'card', token: 'tok_approve' } });
      await client.openSession({ heartbeats: false });
      await client.print([{ destinationZip: '10001', postage: 300 }, { destinationZip: '10002', postage: 450 }]);
      await client.closeSession();
      mailers.push({ client, keyFilePath });
    }
  });

  after(async () => {
    for (const m of mailers) m.client.stopHeartbeats();
    await service?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function databaseUrl(): Promise<string> {
    const db = await openDatabase({ varDir: service.varDir, poolSize: 1 });
    const url = db.url;
    await db.close(); // shares the service's running cluster: closing leaves it running
    return url;
  }

  /** Switches to a new WAL segment and waits until the archive holds the old one: the archive is complete. */
  async function archiveEverything(): Promise<void> {
    const client = new Client({ connectionString: await databaseUrl() });
    await client.connect();
    try {
      const { rows: [s] } = await client.query(`SELECT pg_walfile_name(pg_switch_wal()) AS seg`);
      for (let i = 0; ; i++) {
        const { rows: [a] } = await client.query(`SELECT last_archived_wal FROM pg_stat_archiver`);
        if (a.last_archived_wal !== null && a.last_archived_wal >= s.seg) return;
        if (i > 600) throw new Error(`segment ${s.seg} not archived (last ${a.last_archived_wal})`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      await client.end();
    }
  }

  /** The database's directory lost: server killed, directory deleted. */
  async function loseDatabase(): Promise<void> {
    await service.kill();
    await service.killDatabaseAndWait();
    rmSync(join(service.varDir, 'pgdata'), { recursive: true, force: true });
  }

  async function healthOfModules(): Promise<Array<{ state: string; inRotation: boolean; reason?: string }>> {
    const health = await (await fetch(`${service.url}/v1/health`)).json() as { modules: Array<{ state: string; inRotation: boolean; reason?: string }> };
    return health.modules;
  }

  it('takes a verified base backup beside the running service, with the archive on', async () => {
    const out = await service.runScript('backup');
    expect(out.code, out.stderr).to.equal(0);
    expect(out.stdout).to.match(/^backup base-\d{8}T\d{6}Z verified: /);
    const backups = await listBackups(join(service.varDir, 'backups'));
    expect(backups).to.have.length(1);
    expect(existsSync(join(backups[0].dataDir, 'backup_manifest'))).to.equal(true);
    expect(backups[0].serverMajor).to.equal(15);
    const list = await service.runScript('backup', ['--list']);
    expect(list.stdout).to.contain(backups[0].label);
    // the archive receives segments as the server finishes them
    await archiveEverything();
    expect(readdirSync(join(service.varDir, 'wal-archive')).filter((f) => /^[0-9A-F]{24}$/.test(f)).length).to.be.greaterThan(0);

    await new Promise((r) => setTimeout(r, 1100));
    betweenBackupAndLaterWork = new Date();
    await new Promise((r) => setTimeout(r, 1100));
    // later work, after the backup: only the WAL archive holds it
    for (const m of mailers) {
      await m.client.buy({ amount: 25_000, payment: { kind: 'card', token: 'tok_approve' } });
      await m.client.openSession({ heartbeats: false });
      await m.client.print([{ destinationZip: '10003', postage: 520 }]);
      await m.client.closeSession();
      const b = await m.client.balance();
      held.set(m.client.meterId, { ascending: b.ascending, descending: b.descending });
    }
  });

  it('refuses to restore over the running database (DATABASE_RUNNING) and to a time before every backup (NO_BACKUP)', async () => {
    const running = await service.runScript('restore', ['--to', 'latest']);
    expect(running.code).to.equal(1);
    expect(running.stderr).to.match(/^DATABASE_RUNNING: /);
    const early = await service.runScript('restore', ['--to', '2020-01-01T00:00:00Z']);
    expect(early.code).to.equal(1);
    expect(early.stderr).to.match(/^NO_BACKUP: /);
    // each refused run left its transcript, with the refusal in it
    const transcripts = readdirSync(join(service.varDir, 'transcripts')).map((f) => JSON.parse(readFileSync(join(service.varDir, 'transcripts', f), 'utf8')) as OpsTranscript);
    expect(transcripts.filter((t) => t.procedure === 'restore').map((t) => [t.exitCode, t.error?.code]).sort()).to.deep.equal([[1, 'DATABASE_RUNNING'], [1, 'NO_BACKUP']]);
    expect(early.stderr.trimEnd().split('\n').pop()).to.match(/^transcript .*-restore\.json$/);
    expect(() => parseTarget('2026-12-01 10:00')).to.throw(/zone/); // a time without its zone is refused
    // nothing was changed: the service still serves
    expect((await mailers[0].client.balance()).ascending).to.equal(held.get(mailers[0].client.meterId)!.ascending);
  });

  it('the database lost with the archive complete: restore to latest, the modules serve and every register is as the mailers hold it', async () => {
    await archiveEverything();
    await loseDatabase();
    const out = await service.runScript('restore', ['--to', 'latest']);
    expect(out.code, out.stderr).to.equal(0);
    expect(out.stdout).to.match(/recovery finished: timeline 2/);
    await service.start();
    for (const mod of await healthOfModules()) {
      expect(mod.inRotation, mod.reason).to.equal(true);
      expect(mod.state).to.be.oneOf(['Idle', 'User']);
    }
    for (const m of mailers) {
      m.client.stopHeartbeats();
      const c = await VbiClient.open({ keyFilePath: m.keyFilePath, password });
      m.client = c;
      const b = await c.balance();
      expect({ ascending: b.ascending, descending: b.descending }).to.deep.equal(held.get(c.meterId));
      await c.openSession({ heartbeats: false });
      const out = await c.print([{ destinationZip: '10004', postage: 610 }]);
      expect(out.printed).to.equal(1);
      await c.closeSession();
      held.set(c.meterId, { ascending: b.ascending + 610, descending: b.descending - 610 });
    }
    const db = await openDatabase({ varDir: service.varDir, poolSize: 2 });
    try {
      for (const m of mailers) {
        const rows = await db.knex('indicia').where({ meter_id: m.client.meterId }).select('postage');
        // 300 + 450 before the backup, 520 after it (from the archive), 610 after the restore
        expect(rows.map((r) => Number(r.postage)).sort((a, b) => a - b)).to.deep.equal([300, 450, 520, 610]);
      }
      expect((await conservation(db.knex)).violations).to.deep.equal([]);
    } finally {
      await db.close();
    }
  });

  it('the database and the archive\'s tail lost: restore to the last point available, replay the journal export, and every register, indicium and pool is as before', async () => {
    // the operator exports the journal beside the running service (a cron job, in production)
    const exported = await service.runScript('journal', ['export']);
    expect(exported.code, exported.stderr).to.equal(0);
    expect(exported.stdout).to.match(/^segment 1: \d+ journal row\(s\) exported/);
    const again = await service.runScript('journal', ['export']);
    expect(again.stdout).to.match(/^nothing new/);
    expect((await service.runScript('journal', ['verify'])).stdout).to.match(/^journal export OK: \d+ entries in 1 sealed segment/);
    // verify-journal checks the export too; an export with a line edited does not pass it
    const exportDir = join(service.varDir, 'journal-export');
    expect((await service.runScript('verify-journal', ['--export'])).stdout).to.match(/^journal export OK: \d+ entries and \d+ audit record\(s\) in 1 sealed segment/);
    const edited = join(dir, 'edited-export');
    cpSync(exportDir, edited, { recursive: true });
    const seg = join(edited, 'segment-000001.jsonl');
    writeFileSync(seg, readFileSync(seg, 'utf8').replace(/"amount":(\d+)/, (_m, a) => `"amount":${Number(a) + 1}`));
    const broken = await service.runScript('verify-journal', ['--export', edited]);
    expect(broken.code).to.equal(1);
    expect(broken.stdout).to.match(/^journal export BROKEN: /);
    // a replay while the service runs is refused: it would write under a serving module
    const busy = await service.runScript('journal', ['replay']);
    expect(busy.code).to.equal(1);
    expect(busy.stderr).to.match(/^MODULE_IN_USE: /);

    const db0 = await openDatabase({ varDir: service.varDir, poolSize: 2 });
    const pool0 = await db0.knex('pool').first('purchased', 'available', 'refunds_paid');
    const journalRows0 = Number((await db0.knex('journal').count<{ n: string }[]>({ n: '*' }))[0].n);
    await db0.close();

    // the data disk is lost and the archive holds nothing after the moment between the backup and the later work
    await loseDatabase();
    const restored = await service.runScript('restore', ['--to', betweenBackupAndLaterWork.toISOString()]);
    expect(restored.code, restored.stderr).to.equal(0);
    const replay = await service.runScript('journal', ['replay', '--json']);
    expect(replay.code, replay.stderr).to.equal(0);
    const report = JSON.parse(replay.stdout) as { replayed: number; modules: Array<{ state: string; replayed: number; missing: unknown[] }> };
    expect(report.replayed).to.be.greaterThan(0);
    expect(report.modules.map((m) => m.state)).to.deep.equal(report.modules.map(() => 'in-step'));
    // a second replay finds nothing more to do
    const twice = JSON.parse((await service.runScript('journal', ['replay', '--json'])).stdout) as { replayed: number };
    expect(twice.replayed).to.equal(0);
    const verified = await service.runScript('verify-journal');
    expect(verified.code, verified.stdout + verified.stderr).to.equal(0);

    await service.start();
    for (const mod of await healthOfModules()) expect(mod.inRotation, mod.reason).to.equal(true);
    const db = await openDatabase({ varDir: service.varDir, poolSize: 2 });
    try {
      expect(await db.knex('pool').first('purchased', 'available', 'refunds_paid')).to.deep.equal(pool0);
      expect(Number((await db.knex('journal').count<{ n: string }[]>({ n: '*' }))[0].n)).to.equal(journalRows0);
      for (const m of mailers) {
        m.client.stopHeartbeats();
        const c = await VbiClient.open({ keyFilePath: m.keyFilePath, password });
        m.client = c;
        const b = await c.balance();
        expect({ ascending: b.ascending, descending: b.descending }).to.deep.equal(held.get(c.meterId));
        const rows = await db.knex('indicia').where({ meter_id: c.meterId }).select('postage');
        expect(rows.map((r) => Number(r.postage)).sort((a, b) => a - b)).to.deep.equal([300, 450, 520, 610]);
        // the meter goes on from its registers: nothing printed before can be printed again
        await c.openSession({ heartbeats: false });
        expect((await c.print([{ destinationZip: '10006', postage: 130 }])).printed).to.equal(1);
        await c.closeSession();
        held.set(c.meterId, { ascending: b.ascending + 130, descending: b.descending - 130 });
      }
      expect((await conservation(db.knex)).violations).to.deep.equal([]);
    } finally {
      await db.close();
    }
  });

  it('restored to a moment before work the rings hold, without an officer: the modules stay inhibited and nothing is signed', async () => {
    // restored over a database that still exists: it is renamed aside, never deleted
    await service.stop();
    const out = await service.runScript('restore', ['--to', betweenBackupAndLaterWork.toISOString()]);
    expect(out.code, out.stderr).to.equal(0);
    expect(readdirSync(service.varDir).filter((f) => f.startsWith('pgdata.replaced-'))).to.have.length(1);
    await service.start();
    const mods = await healthOfModules();
    expect(mods.length).to.be.greaterThan(0);
    for (const mod of mods) expect(mod.inRotation).to.equal(false);
    expect(mods.some((m) => m.state === 'Inhibited')).to.equal(true);
    // the restored database lacks the later work, and the module refuses to build on it
    const db = await openDatabase({ varDir: service.varDir, poolSize: 2 });
    try {
      const rows = await db.knex('indicia').where({ meter_id: mailers[0].client.meterId }).select('postage');
      expect(rows.map((r) => Number(r.postage)).sort((a, b) => a - b)).to.deep.equal([300, 450]);
      const before = await db.knex('indicia').count<{ n: string }[]>({ n: '*' });
      const c = mailers[0].client;
      const refused = await c.openSession({ heartbeats: false }).then(() => c.print([{ destinationZip: '10005', postage: 100 }])).then(() => undefined, (e) => e);
      expect(isVbiError(refused), String(refused)).to.equal(true);
      expect((refused as { code: string }).code).to.equal('NO_MODULE'); // every module is out of rotation
      const after = await db.knex('indicia').count<{ n: string }[]>({ n: '*' });
      expect(after[0].n).to.equal(before[0].n);
    } finally {
      await db.close();
    }
  });

  it('a backup altered after it was taken does not verify: restore refuses it (BACKUP_FAILED) and leaves the data directory alone', async () => {
    await service.kill();
    await service.stop();
    const [b] = await listBackups(join(service.varDir, 'backups'));
    writeFileSync(join(b.dataDir, 'PG_VERSION'), '15\n\n'); // one byte more than the manifest says
    const out = await service.runScript('restore', ['--to', 'latest']);
    expect(out.code).to.equal(1);
    expect(out.stderr).to.match(/^BACKUP_FAILED: /);
    expect(existsSync(join(service.varDir, 'pgdata', 'PG_VERSION'))).to.equal(true);
    expect(readdirSync(service.varDir).filter((f) => f.startsWith('pgdata.replaced-'))).to.have.length(1); // the earlier restore's only
  });
});
