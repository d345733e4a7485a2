import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { createVerify } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AuditRecord, canonicalJson } from '@vbi/server/module/audit';
import { memoryAuditStore } from '../helpers/audit-store';
import { decodeCheckpoint, digestOf, parseCheckpoint } from '@vbi/server/module/checkpoint';
import { EMPTY_ROOT, leafHash, rootOf } from '@vbi/server/module/meter-map';
import { PsdEngine } from '@vbi/server/module/psd-engine';
import { CryptoModule } from '@vbi/server/hsm/crypto-module';
import { isVbiError } from '@vbi/core/errors';
import { spkiToKeyObject } from '@vbi/server/hsm/public-keys';
import { Rows, createMeterCommand, creditCommand } from '../helpers/commands';
import { provisionToken, startEngine, uniqueLabel } from '../helpers/hsm';

const run = promisify(execFile);

/** Reads the ring in a fresh process: only what is in the token files can show up there. */
async function ringInAnotherProcess(label: string): Promise<{ state: string; seqs: number[]; newest: string | null; mapEpoch: number }> {
  const r = await run(process.execPath, [join(__dirname, '..', 'helpers', 'ring-reader.js'), label], { env: process.env });
  return JSON.parse(r.stdout);
}

function verifyAudit(rec: AuditRecord, identitySpki: Buffer): boolean {
  const { signature, ...rest } = rec;
  const raw = Buffer.from(signature, 'base64');
  return createVerify('sha256').update(canonicalJson(rest)).verify(
    { key: spkiToKeyObject(identitySpki), dsaEncoding: 'ieee-p1363' }, raw);
}

describe('checkpoint ring and meter map (module level)', () => {
  let label: string;
  let module: CryptoModule;
  let engine: PsdEngine;
  let audit: AuditRecord[];
  let rows: Rows;

  beforeEach(async () => {
    label = uniqueLabel('ring');
    await provisionToken(label);
    audit = [];
    ({ module, engine } = await startEngine(label, 'aes', { audit: memoryAuditStore(), onAudit: (r) => { audit.push(r); } }));
    rows = new Rows();
    await rows.create(engine, 'M-RING-1');
  });
  afterEach(() => module.close());

  const codeOf = (p: Promise<unknown>) => p.then(() => 'OK', (e) => (isVbiError(e) ? e.code : String(e)));

  it("checks the MAC of a meter's newest record in the token only when this engine did not make it; an edited copy is refused", async () => {
    await rows.credit(engine, 'M-RING-1', 100);
    const mine = rows.checkpoint as Buffer;
    let verifies = 0;
    const original = module.verifyMac.bind(module);
    module.verifyMac = async (data: Buffer, mac: Buffer) => {
      verifies++;
      return original(data, mac);
    };
    try {
      rows.store(await engine.dispatch({ ...rows.creditCommand('M-RING-1', 1), meterCheckpoint: mine }));
      const known = verifies;
      const edited = Buffer.from(rows.checkpoint as Buffer);
      edited[edited.length - 1] ^= 1;
      verifies = 0;
      expect(await codeOf(engine.dispatch({ ...rows.creditCommand('M-RING-1', 1), meterCheckpoint: edited }))).to.equal('CHECKPOINT_MAC_INVALID');
      expect(verifies).to.equal(known + 1);
      // the same intact record, to an engine of another process on the same token: verified in the token, accepted
      const other = await startEngine(label, 'aes');
      try {
        const before = verifies;
        const otherVerify = other.module.verifyMac.bind(other.module);
        other.module.verifyMac = async (data: Buffer, mac: Buffer) => {
          verifies++;
          return otherVerify(data, mac);
        };
        rows.store(await other.engine.dispatch({ ...rows.creditCommand('M-RING-1', 1), meterCheckpoint: rows.checkpoint }));
        expect(verifies - before).to.equal(known + 1);
      } finally {
        await other.module.close();
      }
    } finally {
      module.verifyMac = original;
    }
  });

  it('appends one MACed record per completed command, each carrying the new map root, and keeps only the newest N', async () => {
    for (let i = 1; i <= 5; i++) await rows.credit(engine, 'M-RING-1', 1000 * i);
    const seqs = engine.ringEntries().map((e) => e.checkpoint.seq);
    expect(seqs).to.deep.equal([4, 5, 6]);
    const newest = await decodeCheckpoint(module, rows.checkpoint as Buffer);
    expect(newest).to.deep.include({ seq: 6, meterId: 'M-RING-1', type: 'pvd', amount: 5000, descendingRegister: 15_000, ascendingRegister: 0, slot: 0, mapEpoch: 6 });
    expect(newest.totals).to.deep.equal({ reset: 15_000, printed: 0, refunded: 0 });
    expect(newest.packageDigest.equals(digestOf(rows.pkg('M-RING-1')))).to.equal(true);
    expect(newest.prevDigest.equals(digestOf(engine.ringEntries()[1].bytes))).to.equal(true);
    // the root in the record is the map with this meter's leaf = its current package
    const proof = rows.map.view('M-RING-1');
    expect(rootOf(0, leafHash(0, 'M-RING-1', digestOf(rows.pkg('M-RING-1'))), proof.siblings).equals(newest.mapRoot)).to.equal(true);
    expect(newest.mapRoot.equals(EMPTY_ROOT)).to.equal(false);
    expect(engine.status().map).to.deep.equal({ epoch: 6, root: newest.mapRoot.toString('hex') });
    expect(await module.listDataObjects('vbi.ckpt.')).to.have.length(3);
  });

  it('refuses a command whose database checkpoint is not the newest entry, before running it', async () => {
    const stale = rows.checkpoint;
    await rows.credit(engine, 'M-RING-1', 100);
    let ran = false;
    const cmd = { ...rows.creditCommand('M-RING-1', 100), dbCheckpoint: stale };
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
    expect(other.mapEpoch).to.equal(2);
  });

  it('puts nothing in the ring before complete(): an aborted command leaves ring and anchor as they were', async () => {
    const before = engine.ringEntries().map((e) => e.checkpoint.seq);
    const p = await engine.prepare(rows.creditCommand('M-RING-1', 700));
    expect(engine.ringEntries().map((e) => e.checkpoint.seq)).to.deep.equal(before);
    expect(engine.status().map.epoch).to.equal(1);
    engine.abort(p);
    expect(await engine.reconcile(rows.checkpoint)).to.equal('in-step');
    expect(await rows.credit(engine, 'M-RING-1', 50)).to.equal(50);
    expect(engine.ringEntries().at(-1)!.checkpoint.seq).to.equal(2);
  });

  it('rolls forward a record the database committed before a crash kept it out of the ring, and audits it', async () => {
    const p = await engine.prepare(rows.creditCommand('M-RING-1', 300));
    rows.store(p); // COMMIT happened ...
    engine.abort(p); // ... and the process died before complete()
    expect(engine.ringEntries().at(-1)!.checkpoint.seq).to.equal(1);
    expect(await engine.reconcile(rows.checkpoint)).to.equal('rolled-forward');
    expect(engine.ringEntries().at(-1)!.bytes.equals(p.checkpoint)).to.equal(true);
    expect(engine.status().map.epoch).to.equal(2);
    expect(audit.map((a) => a.kind)).to.deep.equal(['checkpoint-rolled-forward']);
    expect(audit[0].details.checkpoint).to.deep.include({ seq: 2, amount: 300 });
    expect(verifyAudit(audit[0], module.identityPublicKey())).to.equal(true);
    expect(await rows.credit(engine, 'M-RING-1', 1)).to.equal(301);
    expect((await ringInAnotherProcess(label)).seqs).to.deep.equal([1, 2, 3]);
  });

  it('inhibits, persistently, when the database is exactly one committed transaction back (no residual window)', async () => {
    const snapshot = { pkg: rows.pkg('M-RING-1'), checkpoint: rows.checkpoint };
    await rows.credit(engine, 'M-RING-1', 100); // committed, in the ring, released
    const err = await engine.reconcile(snapshot.checkpoint).then(() => null, (e) => e);
    expect(isVbiError(err, 'RECOVERY_FAILED'), String(err)).to.equal(true);
    expect((err as { message: string }).message).to.contain('rolled back');
    expect(engine.status().state).to.equal('Inhibited');
    expect(audit.map((a) => a.kind)).to.deep.equal(['module-inhibited']);
    expect(verifyAudit(audit[0], module.identityPublicKey())).to.equal(true);
    expect(await codeOf(rows.credit(engine, 'M-RING-1', 1))).to.equal('MODULE_INHIBITED');
    expect((await ringInAnotherProcess(label)).state).to.equal('Inhibited');
  });

  it('does not roll forward a record that was prepared, aborted, and later presented after another committed', async () => {
    const aborted = await engine.prepare(rows.creditCommand('M-RING-1', 999));
    engine.abort(aborted);
    await rows.credit(engine, 'M-RING-1', 5); // the real seq 2
    expect(parseCheckpoint(aborted.checkpoint).record.seq).to.equal(2);
    const err = await engine.reconcile(aborted.checkpoint).then(() => null, (e) => e);
    expect(isVbiError(err, 'RECOVERY_FAILED'), String(err)).to.equal(true);
    expect(engine.status().state).to.equal('Inhibited');
  });

  it('inhibits when the database checkpoint matches no ring entry, or was deleted', async () => {
    await rows.credit(engine, 'M-RING-1', 100);
    const forged = Buffer.from(rows.checkpoint as Buffer);
    forged[20] ^= 0xff;
    const err = await engine.reconcile(forged).then(() => null, (e) => e);
    expect(isVbiError(err, 'RECOVERY_FAILED'), String(err)).to.equal(true);
    expect((err as { message: string }).message).to.contain('matches no ring entry');

    const label2 = uniqueLabel('ring-del');
    await provisionToken(label2);
    const e2 = await startEngine(label2);
    try {
      const r2 = new Rows();
      await r2.create(e2.engine, 'M-RING-2');
      await r2.credit(e2.engine, 'M-RING-2', 5);
      const err2 = await e2.engine.reconcile(null).then(() => null, (e) => e);
      expect(isVbiError(err2, 'RECOVERY_FAILED'), String(err2)).to.equal(true);
      expect(e2.engine.status().state).to.equal('Inhibited');
    } finally {
      await e2.module.close();
    }
  });

  it('refuses an older package of a meter whose map leaf moved on (PACKAGE_STALE), signs nothing, audits it', async () => {
    const old = rows.pkg('M-RING-1');
    await rows.credit(engine, 'M-RING-1', 100);
    let ran = false;
    const cmd = creditCommand('M-RING-1', old, rows.checkpoint, 100, rows.map.view('M-RING-1'));
    const err = await engine.dispatch({ ...cmd, execute: async (p, c) => { ran = true; return cmd.execute(p, c); } }).then(() => null, (e) => e);
    expect(isVbiError(err, 'PACKAGE_STALE'), String(err)).to.equal(true);
    expect(ran).to.equal(false);
    expect(audit.map((a) => a.kind)).to.deep.equal(['package-stale']);
    expect(verifyAudit(audit[0], module.identityPublicKey())).to.equal(true);
    expect(engine.status().state).to.equal('Idle');
  });

  it("refuses a meter presented with another meter's slot, and a create on a slot already taken", async () => {
    await rows.create(engine, 'M-RING-2');
    const wrongSlot = { ...rows.map.view('M-RING-2'), ...{ slot: 0, siblings: rows.map.view('M-RING-1').siblings } };
    expect(await codeOf(engine.dispatch(creditCommand('M-RING-2', rows.pkg('M-RING-2'), rows.checkpoint, 1, wrongSlot)))).to.equal('PACKAGE_STALE');
    expect(await codeOf(engine.dispatch(createMeterCommand('M-RING-3', rows.checkpoint, rows.map.view('M-RING-1'))))).to.equal('PACKAGE_STALE');
  });

  it('inhibits on a map older than the rings or edited at the same epoch; a map ahead is MAP_AHEAD', async () => {
    await rows.credit(engine, 'M-RING-1', 100);
    const ahead = { ...rows.map.view('M-RING-1'), epoch: rows.map.epoch + 1 };
    expect(await codeOf(engine.dispatch(creditCommand('M-RING-1', rows.pkg('M-RING-1'), rows.checkpoint, 1, ahead)))).to.equal('MAP_AHEAD');
    expect(engine.status().state).to.equal('Idle');
    const edited = { ...rows.map.view('M-RING-1'), root: Buffer.alloc(32, 7) };
    expect(await codeOf(engine.dispatch(creditCommand('M-RING-1', rows.pkg('M-RING-1'), rows.checkpoint, 1, edited)))).to.equal('RECOVERY_FAILED');
    expect(engine.status().reason).to.contain('edited');
    // a second module: the older map
    const label2 = uniqueLabel('ring-map');
    await provisionToken(label2);
    const e2 = await startEngine(label2);
    try {
      const r2 = new Rows();
      await r2.create(e2.engine, 'M-MAP-1');
      const before = r2.map.view('M-MAP-1');
      await r2.credit(e2.engine, 'M-MAP-1', 1);
      const err = await e2.engine.dispatch(creditCommand('M-MAP-1', r2.pkg('M-MAP-1'), r2.checkpoint, 1, { ...r2.map.view('M-MAP-1'), epoch: before.epoch, root: before.root })).then(() => null, (e) => e);
      expect(isVbiError(err, 'RECOVERY_FAILED'), String(err)).to.equal(true);
      expect(e2.engine.status().reason).to.contain('rolled back');
    } finally {
      await e2.module.close();
    }
  });

  it('returns to service only through the officer reinstatement, which accepts the database state and never reuses a sequence number', async () => {
    const snapshot = { pkg: rows.pkg('M-RING-1'), checkpoint: rows.checkpoint, map: rows.map.view('M-RING-1') };
    await rows.credit(engine, 'M-RING-1', 200);
    await rows.credit(engine, 'M-RING-1', 300);
    await engine.reconcile(snapshot.checkpoint).catch(() => undefined);
    expect(engine.status().state).to.equal('Inhibited');
    const r = await engine.prepareReinstatement({ dbCheckpoint: snapshot.checkpoint, map: snapshot.map });
    expect(r.record).to.deep.include({ type: 'reinstate', seq: 4, mapEpoch: 4 });
    expect(r.record.prevDigest.equals(digestOf(snapshot.checkpoint as Buffer))).to.equal(true);
    const rec = await engine.completeReinstatement({ ...r, officer: 'test officer' });
    expect(rec?.kind).to.equal('module-reinstated');
    expect(engine.status().state).to.equal('Idle');
    expect(engine.ringEntries().map((e) => e.checkpoint.seq)).to.deep.equal([4]);
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
