import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { createVerify } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AuditRecord, canonicalJson } from '../src/module/audit';
import { decodeCheckpoint, digestOf } from '../src/module/checkpoint';
import { PsdEngine } from '../src/module/psd-engine';
import { CryptoModule } from '../src/hsm/crypto-module';
import { isVbiError } from '../src/errors';
import { spkiToKeyObject } from '../src/hsm/public-keys';
import { Rows, createMeterCommand, creditCommand } from './helpers/commands';
import { provisionToken, startEngine, uniqueLabel } from './helpers/hsm';

const run = promisify(execFile);

/** Reads the ring in a fresh process: only what is in the token files can show up there. */
async function ringInAnotherProcess(label: string): Promise<{ state: string; seqs: number[]; newest: string | null; confirmedSeq: number }> {
  const r = await run(process.execPath, [join(__dirname, 'helpers', 'ring-reader.js'), label], { env: process.env });
  return JSON.parse(r.stdout);
}

function verifyAudit(rec: AuditRecord, identitySpki: Buffer): boolean {
  const { signature, ...rest } = rec;
  const raw = Buffer.from(signature, 'base64');
  return createVerify('sha256').update(canonicalJson(rest)).verify(
    { key: spkiToKeyObject(identitySpki), dsaEncoding: 'ieee-p1363' }, raw);
}

describe('checkpoint ring', () => {
  let label: string;
  let module: CryptoModule;
  let engine: PsdEngine;
  let audit: AuditRecord[];
  let rows: Rows;

  beforeEach(async () => {
    label = uniqueLabel('ring');
    await provisionToken(label);
    audit = [];
    ({ module, engine } = await startEngine(label, 'aes', { audit: (r) => { audit.push(r); } }));
    rows = new Rows();
    await rows.create(engine, 'M-RING-1');
  });
  afterEach(() => module.close());

  it('appends one MACed record per command and keeps only the newest N', async () => {
    for (let i = 1; i <= 5; i++) await rows.credit(engine, 'M-RING-1', 1000 * i);
    const seqs = engine.ringEntries().map((e) => e.checkpoint.seq);
    expect(seqs).to.deep.equal([4, 5, 6]);
    const newest = await decodeCheckpoint(module, rows.checkpoint as Buffer);
    expect(newest).to.deep.include({ seq: 6, meterId: 'M-RING-1', type: 'pvd', amount: 5000, descendingRegister: 15_000, ascendingRegister: 0 });
    expect(newest.totals).to.deep.equal({ reset: 15_000, printed: 0, refunded: 0 });
    expect(newest.packageDigest.equals(digestOf(rows.pkg as Buffer))).to.equal(true);
    expect(newest.prevDigest.equals(digestOf(engine.ringEntries()[1].bytes))).to.equal(true);
    expect(await module.listDataObjects('vbi.ckpt.')).to.have.length(3);
  });

  it('refuses a command whose database checkpoint is not the newest entry, before running it', async () => {
    const stale = rows.checkpoint;
    await rows.credit(engine, 'M-RING-1', 100);
    let ran = false;
    const cmd = creditCommand('M-RING-1', rows.pkg as Buffer, stale, 100);
    const err = await engine.dispatch({ ...cmd, execute: async (p, c) => { ran = true; return cmd.execute(p, c); } }).then(() => null, (e) => e);
    expect(isVbiError(err, 'CHECKPOINT_MISMATCH'), String(err)).to.equal(true);
    expect(ran).to.equal(false);
  });

  it('survives a process restart', async () => {
    await rows.credit(engine, 'M-RING-1', 250);
    const other = await ringInAnotherProcess(label);
    expect(other.state).to.equal('Idle');
    expect(other.seqs).to.deep.equal([1, 2]);
    expect(other.newest).to.equal((rows.checkpoint as Buffer).toString('hex'));
  });

  it('auto-recovers a crash after the ring update and before the database stored the checkpoint', async () => {
    await rows.credit(engine, 'M-RING-1', 300);
    const before = { pkg: rows.pkg, checkpoint: rows.checkpoint };
    // the module ran the command, the "database" never committed it:
    const lost = await engine.dispatch(creditCommand('M-RING-1', rows.pkg as Buffer, rows.checkpoint, 700));
    const mismatch = await engine.dispatch(creditCommand('M-RING-1', before.pkg as Buffer, before.checkpoint, 50)).then(() => null, (e) => e);
    expect(isVbiError(mismatch, 'CHECKPOINT_MISMATCH')).to.equal(true);

    const r = await engine.autoRecover(before.checkpoint);
    expect(r.recovered).to.equal(true);
    expect(r.audit).to.have.length(1);
    const rec = r.audit[0];
    expect(rec.kind).to.equal('checkpoint-discarded');
    expect(rec.details.checkpoint).to.deep.include({ seq: lost.record.seq, amount: 700, type: 'pvd', meterId: 'M-RING-1' });
    expect(verifyAudit(rec, module.identityPublicKey())).to.equal(true);
    expect(audit).to.deep.equal(r.audit);

    // the retried command now runs on the database's state
    expect(await rows.credit(engine, 'M-RING-1', 50)).to.equal(350);
    expect(engine.status().state).to.equal('Idle');
    const other = await ringInAnotherProcess(label);
    // the discarded number is issued again: the database never saw the discarded record
    expect(other.seqs).to.deep.equal([1, 2, lost.record.seq]);
    expect(other.newest).to.equal((rows.checkpoint as Buffer).toString('hex'));
  });

  it('auto-recovers a crash on the very first command of a module (database has no row)', async () => {
    const fresh = uniqueLabel('ring-first');
    await provisionToken(fresh);
    const e2 = await startEngine(fresh);
    try {
      await e2.engine.dispatch(createMeterCommand('M-FIRST-1', null));
      const r = await e2.engine.autoRecover(null);
      expect(r.recovered).to.equal(true);
      expect(e2.engine.ringEntries()).to.have.length(0);
    } finally {
      await e2.module.close();
    }
  });

  it('inhibits, persistently, when the database presents an older but confirmed entry (rollback)', async () => {
    await rows.credit(engine, 'M-RING-1', 100);
    const snapshot = { pkg: rows.pkg, checkpoint: rows.checkpoint };
    await rows.credit(engine, 'M-RING-1', 200); // confirms `snapshot` ...
    await rows.credit(engine, 'M-RING-1', 300);
    // ... so a database restored to the snapshot is a rollback, not a crash
    const err = await engine.autoRecover(snapshot.checkpoint).then(() => null, (e) => e);
    expect(isVbiError(err, 'RECOVERY_FAILED'), String(err)).to.equal(true);
    expect((err as { message: string }).message).to.contain('rolled back');
    expect(engine.status().state).to.equal('Inhibited');
    expect(audit.map((a) => a.kind)).to.deep.equal(['module-inhibited']);
    expect(verifyAudit(audit[0], module.identityPublicKey())).to.equal(true);
    const refused = await rows.credit(engine, 'M-RING-1', 1).then(() => null, (e) => e);
    expect(isVbiError(refused, 'MODULE_INHIBITED'), String(refused)).to.equal(true);
    expect((await ringInAnotherProcess(label)).state).to.equal('Inhibited');
  });

  it('inhibits when a rollback of one transaction is presented after the newest was confirmed without a successor', async () => {
    await rows.credit(engine, 'M-RING-1', 100);
    const previous = rows.checkpoint;
    await rows.credit(engine, 'M-RING-1', 200);
    // a command presents the newest checkpoint (confirming it) and then fails its own checks
    const failed = await rows.credit(engine, 'M-RING-1', 5_000_000).then(() => null, (e) => e);
    expect(String(failed)).to.contain('over max DR');
    // the database is then rolled back by exactly one committed transaction
    const err = await engine.autoRecover(previous).then(() => null, (e) => e);
    expect(isVbiError(err, 'RECOVERY_FAILED'), String(err)).to.equal(true);
    expect(engine.status().state).to.equal('Inhibited');
  });

  it('inhibits when the database checkpoint matches no ring entry, or was deleted', async () => {
    await rows.credit(engine, 'M-RING-1', 100);
    const forged = Buffer.from(rows.checkpoint as Buffer);
    forged[20] ^= 0xff;
    const err = await engine.autoRecover(forged).then(() => null, (e) => e);
    expect(isVbiError(err, 'RECOVERY_FAILED'), String(err)).to.equal(true);
    expect((err as { message: string }).message).to.contain('matches no ring entry');

    const label2 = uniqueLabel('ring-del');
    await provisionToken(label2);
    const e2 = await startEngine(label2);
    try {
      const r2 = new Rows();
      await r2.create(e2.engine, 'M-RING-2');
      await r2.credit(e2.engine, 'M-RING-2', 5);
      const err2 = await e2.engine.autoRecover(null).then(() => null, (e) => e);
      expect(isVbiError(err2, 'RECOVERY_FAILED'), String(err2)).to.equal(true);
      expect(e2.engine.status().state).to.equal('Inhibited');
    } finally {
      await e2.module.close();
    }
  });

  it('returns to service only through the officer reinstatement, accepting the database checkpoint', async () => {
    await rows.credit(engine, 'M-RING-1', 100);
    const snapshot = { pkg: rows.pkg, checkpoint: rows.checkpoint };
    await rows.credit(engine, 'M-RING-1', 200);
    await rows.credit(engine, 'M-RING-1', 300);
    await engine.autoRecover(snapshot.checkpoint).catch(() => undefined);
    expect(engine.status().state).to.equal('Inhibited');
    const rec = await engine.reinstate({ dbCheckpoint: snapshot.checkpoint, officer: 'test officer' });
    expect(rec.kind).to.equal('module-reinstated');
    expect(engine.status().state).to.equal('Idle');
    rows.pkg = snapshot.pkg;
    rows.checkpoint = snapshot.checkpoint;
    expect(await rows.credit(engine, 'M-RING-1', 1)).to.equal(101);
    // sequence numbers are never reused after a reinstatement
    expect(engine.ringEntries().map((e) => e.checkpoint.seq)).to.deep.equal([2, 5]);
    expect((await ringInAnotherProcess(label)).state).to.equal('Idle');
  });

  it('honours a configured ring size of 5', async () => {
    const label5 = uniqueLabel('ring5');
    await provisionToken(label5);
    const e5 = await startEngine(label5, 'aes', { ringSize: 5 });
    try {
      const r5 = new Rows();
      await r5.create(e5.engine, 'M-RING-5');
      for (let i = 0; i < 6; i++) await r5.credit(e5.engine, 'M-RING-5', 1);
      expect(e5.engine.ringEntries().map((e) => e.checkpoint.seq)).to.deep.equal([3, 4, 5, 6, 7]);
    } finally {
      await e5.module.close();
    }
  });
});
