import { expect } from 'chai';
import { createIndicium } from '../helpers/ledger-commands';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VbiClient } from '@vbi/client/client/vbi-client';
import { ServerFixture, serverFixture } from '../helpers/server';
import { conservation } from '@vbi/server/ledger/conservation';
import { verifyJournal } from '@vbi/server/ledger/journal-verify';
import { createService } from '@vbi/server/service';
import { decodeCheckpoint, digestOf } from '@vbi/server/module/checkpoint';
import { postageValueDownload } from '@vbi/server/module/commands/postage-value-download';
import { codeOf } from '../helpers/codes';
import { requireClone } from '../helpers/hsm';
import { LedgerFixture, MAIL, asInsider, ledgerFixture, restore, snapshot, testConfig, moduleEvents } from '../helpers/ledger';
import { PsdEngine } from '@vbi/server/module/psd-engine';
import { RING_PREFIX } from '@vbi/server/module/checkpoint-ring';
import { vbiError } from '@vbi/core/errors';

/*
 * Group commit (docs/ledger.md): commands that wait for the same module are committed in one
 * transaction with one ring append; each still has its own record, chained to the one before.
 * The attacks and crashes of the rollback-proof ledger, aimed at a group.
 */

/** `n` funded meters of the fixture. */
async function meters(f: LedgerFixture, n: number, funds = 10_000): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const { meterId } = await f.newMeter(1_000_000);
    await f.service.ledger.postageValueDownload({ meterId, amount: funds });
    out.push(meterId);
  }
  return out;
}

/** The first command goes alone at once; those issued with it wait and form one group. */
function together<T>(fns: Array<() => Promise<T>>): Promise<PromiseSettledResult<T>[]> {
  return Promise.allSettled(fns.map((fn) => fn()));
}

/** Rows of a table now. */
async function count(f: LedgerFixture, table: string): Promise<number> {
  return Number((await f.db.knex(table).count({ n: '*' }).first())?.n);
}

/** The module's database row holds the ring's newest record. */
async function rowInStep(f: LedgerFixture, engine: PsdEngine): Promise<boolean> {
  const row = await f.db.knex('modules').where({ module_serial: engine.hsm.serial }).first('checkpoint');
  return (row.checkpoint as Buffer).equals(engine.ringEntries().at(-1)!.bytes);
}

async function records(f: LedgerFixture, serial: string) {
  const rows = await f.db.knex('journal').where({ module_serial: serial }).orderBy('checkpoint_seq').select('checkpoint');
  const hsm = f.service.engines[0].hsm;
  return Promise.all(rows.map(async (r: { checkpoint: Buffer }) => ({ bytes: r.checkpoint, record: await decodeCheckpoint(hsm, r.checkpoint) })));
}

describe('group commit', function () {
  this.timeout(180_000);

  it('commands waiting for one module commit as one group: a record each, chained, and one ring append for the group', async () => {
    const f = await ledgerFixture();
    try {
      const ids = await meters(f, 7);
      const engine = f.service.engines[0];
      const before = f.service.ledger.commitStats();
      const ringBefore = engine.ringEntries().map((e) => e.checkpoint.seq);
      const out = await together(ids.map((meterId) => () => f.service.ledger.postageValueDownload({ meterId, amount: 500 })));
      expect(out.map((o) => o.status)).to.deep.equal(ids.map(() => 'fulfilled'));
      const after = f.service.ledger.commitStats();
      // the first went alone; the six that arrived while it ran went as one group
      expect({ groups: after.groups - before.groups, commands: after.commands - before.commands, largest: after.largest })
        .to.deep.equal({ groups: 2, commands: 7, largest: 6 });
      for (const meterId of ids) expect(await f.service.ledger.registers(meterId)).to.deep.include({ descendingRegister: 10_500 });

      // every command has its record in the journal, consecutive and chained
      const all = await records(f, engine.hsm.serial);
      for (let i = 1; i < all.length; i++) {
        expect(all[i].record.seq).to.equal(all[i - 1].record.seq + 1);
        expect(all[i].record.prevDigest.equals(digestOf(all[i - 1].bytes))).to.equal(true);
        expect(all[i].record.mapEpoch).to.equal(all[i - 1].record.mapEpoch + 1);
      }
      // the ring got the lone command's last record and the group's last one only (each download
      // has two: the meter's and the master PSD's)
      const last = all[all.length - 1].record.seq;
      expect(engine.ringEntries().map((e) => e.checkpoint.seq)).to.deep.equal([...ringBefore, last - 12, last].slice(-engine.status().ring.size));
      expect(await rowInStep(f, engine)).to.equal(true);
      expect((await conservation(f.db.knex, { hsm: engine.hsm })).violations).to.deep.equal([]);
      expect(await verifyJournal({ db: f.db.knex, hsm: engine.hsm })).to.deep.include({ ok: true });
    } finally {
      await f.service.close();
    }
  });

  it('a command that fails in a group fails alone: a meter row put back (PACKAGE_STALE) and an unknown meter change nothing of the others', async () => {
    const f = await ledgerFixture();
    try {
      const ids = await meters(f, 5);
      const stale = ids[2];
      // the insider puts one meter's row back after a download (more funds to spend twice)
      const old = await f.db.knex('meters').where({ meter_id: stale }).first();
      await f.service.ledger.postageValueDownload({ meterId: stale, amount: 1_000 });
      const current = await f.db.knex('meters').where({ meter_id: stale }).first();
      await f.db.knex('meters').where({ meter_id: stale }).update({ package: old.package, record_counter: old.record_counter, descending_register: old.descending_register });
      const poolBefore = await f.service.ledger.pool();
      const journalBefore = (await count(f, 'journal'));

      const out = await together([
        ...ids.map((meterId) => () => f.service.ledger.postageValueDownload({ meterId, amount: 700 })),
        () => f.service.ledger.postageValueDownload({ meterId: 'TNOSUCH-1', amount: 700 }),
      ]);
      const codes = await Promise.all(out.map((o) => (o.status === 'fulfilled' ? 'OK' : codeOf(Promise.reject(o.reason)))));
      expect(codes).to.deep.equal(['OK', 'OK', 'PACKAGE_STALE', 'OK', 'OK', 'UNKNOWN_METER']);
      for (const meterId of ids.filter((m) => m !== stale)) expect(await f.service.ledger.registers(meterId)).to.deep.include({ descendingRegister: 10_700 });
      expect(await f.service.ledger.pool()).to.deep.include({ available: poolBefore.available - 4 * 700 });
      expect((await count(f, 'journal'))).to.equal(journalBefore + 8); // the four downloads' records and the master PSD's
      expect(f.service.engines[0].status().state).to.equal('Idle');
      expect((await moduleEvents(f.db.knex)).map((a) => a.kind)).to.deep.equal(['package-stale']);
      // the group's transaction rolled back only the stale meter's savepoint: the next command sees an honest chain
      expect(await codeOf(f.service.ledger.postageValueDownload({ meterId: ids[0], amount: 1 }))).to.equal('OK');
      // the current row back: the stale meter is served again, and the books balance
      await f.db.knex('meters').where({ meter_id: stale }).update({ package: current.package, record_counter: current.record_counter, descending_register: current.descending_register });
      expect(await f.service.ledger.postageValueDownload({ meterId: stale, amount: 1 })).to.deep.include({ descendingRegister: 11_001 });
      expect((await conservation(f.db.knex, { hsm: f.service.engines[0].hsm })).violations).to.deep.equal([]);
    } finally {
      await f.service.close();
    }
  });

  it('a command whose statement fails after the module ran it fails alone: its savepoint rolls back, the others commit, the chain skips it', async () => {
    const f = await ledgerFixture();
    try {
      const ids = await meters(f, 4);
      const engine = f.service.engines[0];
      const journalBefore = (await count(f, 'journal'));
      const pvd = (meterId: string, broken = false) => () => f.service.ledger.run({
        meterId, type: 'pvd', execute: postageValueDownload({ amount: 250 }),
        pool: () => ({ kind: 'download', amount: 250, meterId }),
        after: async (trx) => {
          if (broken) await trx.raw('SELECT 1 / 0'); // a statement the database refuses
        },
        details: () => ({ amount: 250 }),
      });
      const out = await together([pvd(ids[0]), pvd(ids[1]), pvd(ids[2], true), pvd(ids[3])]);
      expect(out.map((o) => (o.status === 'fulfilled' ? 'OK' : String(o.reason)))).to.deep.equal(['OK', 'OK', 'error: SELECT 1 / 0 - division by zero', 'OK']);
      for (const meterId of ids) expect(await f.service.ledger.registers(meterId)).to.deep.include({ descendingRegister: meterId === ids[2] ? 10_000 : 10_250 });
      // each download's record and the master PSD's after it
      expect((await count(f, 'journal'))).to.equal(journalBefore + 6);
      const all = await records(f, engine.hsm.serial);
      for (let i = 1; i < all.length; i++) expect(all[i].record.prevDigest.equals(digestOf(all[i - 1].bytes))).to.equal(true);
      expect(engine.status().state).to.equal('Idle');
      expect(await codeOf(f.service.ledger.postageValueDownload({ meterId: ids[2], amount: 1 }))).to.equal('OK');
      expect((await conservation(f.db.knex, { hsm: engine.hsm })).violations).to.deep.equal([]);
    } finally {
      await f.service.close();
    }
  });

  it('a snapshot restored exactly one committed group back: inhibited, nothing more signed', async () => {
    const f = await ledgerFixture();
    try {
      const ids = await meters(f, 4);
      await snapshot(f.db, 'g1');
      const out = await together(ids.map((meterId) => () => f.service.ledger.postageValueDownload({ meterId, amount: 100 })));
      expect(out.map((o) => o.status)).to.deep.equal(ids.map(() => 'fulfilled'));
      await restore(f.db, 'g1');
      const journal = await count(f, 'journal');
      expect(await codeOf(f.service.ledger.postageValueDownload({ meterId: ids[0], amount: 100 }))).to.equal('NO_MODULE');
      expect(f.service.engines[0].status().state).to.equal('Inhibited');
      expect(f.service.engines[0].status().reason).to.contain('rolled back');
      expect(await count(f, 'journal')).to.equal(journal);
    } finally {
      await f.service.close();
    }
  });

  it('a crash before COMMIT in the middle of a group: nothing of the group committed or released, the ring as it was', async () => {
    let crashOn: string | undefined;
    const f = await ledgerFixture({ ledger: { faults: { beforeCommit: ({ meterId }) => { if (meterId === crashOn) throw new Error('simulated crash before COMMIT'); } } } });
    try {
      const ids = await meters(f, 5);
      const engine = f.service.engines[0];
      const lone = ids[0];
      crashOn = ids[3];
      const ringBefore = engine.ringEntries().map((e) => e.checkpoint.seq);
      const out = await together(ids.map((meterId) => () => f.service.ledger.postageValueDownload({ meterId, amount: 300 })));
      crashOn = undefined;
      // the lone first command committed; the whole group of four failed with the crash
      expect(out.map((o) => (o.status === 'fulfilled' ? 'OK' : String(o.reason).includes('simulated crash') ? 'crash' : String(o.reason))))
        .to.deep.equal(['OK', 'crash', 'crash', 'crash', 'crash']);
      for (const meterId of ids) expect(await f.service.ledger.registers(meterId)).to.deep.include({ descendingRegister: meterId === lone ? 10_300 : 10_000 });
      expect(engine.ringEntries().map((e) => e.checkpoint.seq).slice(0, -1)).to.deep.equal(ringBefore.slice(-(engine.status().ring.size - 1)));
      expect(await rowInStep(f, engine)).to.equal(true);
      // and every one of them runs again on the database's state
      const again = await together(ids.map((meterId) => () => f.service.ledger.postageValueDownload({ meterId, amount: 300 })));
      expect(again.map((o) => o.status)).to.deep.equal(ids.map(() => 'fulfilled'));
      expect((await moduleEvents(f.db.knex)).map((a) => a.kind)).to.deep.equal([]);
      expect((await conservation(f.db.knex, { hsm: engine.hsm })).violations).to.deep.equal([]);
    } finally {
      await f.service.close();
    }
  });

  describe('a crash after COMMIT, before the group\'s ring append', () => {
    /** Commits a group of four and "crashes" before its ring append; returns the group's records' sequence numbers. */
    async function crashedGroup(): Promise<{ f: LedgerFixture; ids: string[]; seqs: number[] }> {
      const crashFor = new Set<string>();
      const f = await ledgerFixture({ ledger: { faults: { afterCommit: ({ meterId }) => { if (crashFor.has(meterId)) throw new Error('simulated crash after COMMIT'); } } } });
      const ids = await meters(f, 5);
      // the lone first command commits and is released; the group of the other four meets the crash
      for (const m of ids.slice(1)) crashFor.add(m);
      const out = await together(ids.map((meterId) => () => f.service.ledger.postageValueDownload({ meterId, amount: 300 })));
      crashFor.clear();
      expect(out.map((o) => o.status)).to.deep.equal(['fulfilled', 'rejected', 'rejected', 'rejected', 'rejected']);
      const rows = await f.db.knex('journal').where({ module_serial: f.service.engines[0].hsm.serial }).orderBy('checkpoint_seq', 'desc').limit(8).select('checkpoint_seq'); // each download's and the master PSD's
      await f.service.close();
      return { f, ids, seqs: rows.map((r: { checkpoint_seq: string }) => Number(r.checkpoint_seq)).reverse() };
    }

    it('the next start rolls the ring forward over the whole group, audits it, and nothing is lost', async () => {
      const { f, ids, seqs } = await crashedGroup();
      const again = await createService({ config: testConfig(f.labels), db: f.db });
      try {
        expect(again.engines[0].status().state).to.equal('Idle');
        expect(again.engines[0].ringEntries().at(-1)!.checkpoint.seq).to.equal(seqs[seqs.length - 1]);
        const audit = await moduleEvents(f.db.knex);
        expect(audit.map((a) => a.kind)).to.deep.equal(['checkpoint-rolled-forward']);
        expect(audit[0].details.records).to.deep.equal(seqs);
        for (const meterId of ids) expect(await again.ledger.registers(meterId)).to.deep.include({ descendingRegister: 10_300 });
        expect(await codeOf(again.ledger.postageValueDownload({ meterId: ids[1], amount: 1 }))).to.equal('OK');
        expect((await conservation(f.db.knex, { hsm: again.engines[0].hsm })).violations).to.deep.equal([]);
      } finally {
        await again.close();
      }
    });

    for (const attack of ['deleted', 'edited', 'swapped'] as const) {
      it(`a record of the group ${attack} in the journal before the restart: no roll forward, the module is inhibited`, async () => {
        const { f, ids, seqs } = await crashedGroup();
        const serial = (await f.db.knex('modules').first('module_serial')).module_serial;
        await asInsider(f.db.knex, async (trx) => {
          const at = (seq: number) => trx('journal').where({ module_serial: serial, checkpoint_seq: seq });
          if (attack === 'deleted') await at(seqs[1]).del();
          if (attack === 'edited') {
            const row = await at(seqs[1]).first('checkpoint');
            const bytes = Buffer.from(row.checkpoint);
            bytes[bytes.length - 1] ^= 1;
            await at(seqs[1]).update({ checkpoint: bytes });
          }
          if (attack === 'swapped') {
            const a = await at(seqs[1]).first('checkpoint');
            const b = await at(seqs[2]).first('checkpoint');
            await at(seqs[1]).update({ checkpoint: b.checkpoint });
            await at(seqs[2]).update({ checkpoint: a.checkpoint });
          }
        });
        const again = await createService({ config: testConfig(f.labels), db: f.db });
        try {
          expect(again.engines[0].status().state).to.equal('Inhibited');
          expect(await codeOf(again.ledger.postageValueDownload({ meterId: ids[1], amount: 1 }))).to.equal('NO_MODULE');
          expect((await moduleEvents(f.db.knex)).map((a) => a.kind)).to.deep.equal(['module-inhibited']);
        } finally {
          await again.close();
        }
      });
    }
  });

  it('two modules, 60 meters, commands from all at once: grouped on both modules, no double spend, registers conserved', async function () {
    requireClone(this); // the second module is cloned from the first one's shared keys
    const f = await ledgerFixture({ modules: 2 });
    try {
      const ids = await meters(f, 60, 1_000);
      const before = f.service.ledger.commitStats();
      // each meter can pay for two of its three 400-mill indicia
      const calls = ids.flatMap((meterId) => [0, 1, 2].map(() => () => createIndicium(f.service.ledger, { meterId, postage: 400, mailpiece: MAIL })));
      const out = await together(calls);
      const ok = out.filter((o) => o.status === 'fulfilled').length;
      const codes = await Promise.all(out.filter((o) => o.status === 'rejected').map((o) => codeOf(Promise.reject((o as PromiseRejectedResult).reason))));
      expect({ ok, refused: codes.length, codes: [...new Set(codes)] }).to.deep.equal({ ok: 120, refused: 60, codes: ['INSUFFICIENT_FUNDS'] });
      for (const meterId of ids) expect(await f.service.ledger.registers(meterId)).to.deep.include({ ascendingRegister: 800, descendingRegister: 200 });
      const after = f.service.ledger.commitStats();
      expect(after.commands - before.commands).to.equal(120);
      expect(after.largest).to.be.greaterThan(1);
      const serials = await f.db.knex('journal').where({ tx_type: 'indicium' }).distinct('module_serial');
      expect(serials).to.have.length(2);
      for (const e of f.service.engines) expect(await rowInStep(f, e)).to.equal(true);
      expect((await conservation(f.db.knex, { hsm: f.service.engines[0].hsm })).violations).to.deep.equal([]);
      expect(await verifyJournal({ db: f.db.knex, hsm: f.service.engines[1].hsm })).to.deep.include({ ok: true });
    } finally {
      await f.service.close();
    }
  });
});

describe('group commit through HTTP: 50 mailers on two modules', function () {
  this.timeout(300_000);
  let f: ServerFixture;
  let dir: string;

  before(async function () {
    requireClone(this); // the second module is cloned from the first one's shared keys
    f = await serverFixture({ modules: 2, pool: 5, authRateLimit: { limit: 1_000, windowMs: 60_000 } });
    dir = mkdtempSync(join(tmpdir(), 'vbi-group-http-'));
  });
  after(async () => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    await f?.close();
  });

  it('each prints three 400-mill items with 1,000 mills, all at once: two print, the third fails, nothing spent twice, groups on both modules', async () => {
    const mailers: VbiClient[] = [];
    for (let i = 0; i < 50; i++) {
      const c = await VbiClient.register({
        baseUrl: f.url, rootCertPem: f.rootPem, name: `Group ${i}`, licensingZip: '20260', returnAddress: ['Group', '1 Main St'],
        password: 'group commit password', keyFilePath: join(dir, `key-${i}.json`),
      });
      await c.refreshModules();
      await c.buy({ amount: 1_000, payment: { kind: 'card', token: 'tok_approve' } });
      mailers.push(c);
    }
    // sessions last timeoutMs without a heartbeat: opened once everyone is registered
    for (const c of mailers) await c.openSession({ heartbeats: false });
    const before = f.service.ledger.commitStats();
    const outcomes = await Promise.all(mailers.map(async (c) => {
      const out: string[] = [];
      for (let n = 0; n < 3; n++) {
        const r = await c.print([{ destinationZip: '205000001', postage: 400 }]);
        out.push(r.items[0].status === 'printed' ? 'printed' : `${r.items[0].status} ${r.items[0].reason}`);
      }
      return out;
    }));
    for (const o of outcomes) expect(o).to.deep.equal(['printed', 'printed', 'failed INSUFFICIENT_FUNDS']);
    const after = f.service.ledger.commitStats();
    expect(after.commands - before.commands).to.equal(150);
    expect(after.groups - before.groups).to.be.below(150);
    for (const c of mailers) {
      expect(c.registers).to.deep.equal({ ascending: 800, descending: 200 });
      const row = await f.service.db.knex('meters').where({ meter_id: c.meterId }).first('ascending_register', 'descending_register');
      expect([Number(row.ascending_register), Number(row.descending_register)]).to.deep.equal([800, 200]);
      expect(Number((await f.service.db.knex('indicia').where({ meter_id: c.meterId }).count({ n: '*' }).first())?.n)).to.equal(2);
    }
    const serials = await f.service.db.knex('indicia').whereIn('meter_id', mailers.map((c) => c.meterId)).distinct('module_serial');
    expect(serials).to.have.length(2);
    for (const e of f.service.engines) {
      const row = await f.service.db.knex('modules').where({ module_serial: e.hsm.serial }).first('checkpoint');
      expect((row.checkpoint as Buffer).equals(e.ringEntries().at(-1)!.bytes)).to.equal(true);
    }
    expect((await conservation(f.service.db.knex, { hsm: f.service.engines[0].hsm })).violations).to.deep.equal([]);
    expect((await verifyJournal({ db: f.service.db.knex, hsm: f.service.engines[1].hsm })).findings).to.deep.equal([]);
    for (const c of mailers) await c.closeSession();
  });
});

/**
 * The module's ring append held back on a gate: `started` resolves when the next ring record's
 * write has begun; open() lets it go on, fail() makes it fail as a token error would.
 */
function gateRingAppend(engine: PsdEngine): { started: Promise<void>; open: () => void; fail: () => void } {
  const hsm = engine.hsm as PsdEngine['hsm'] & { createDataObject: PsdEngine['hsm']['createDataObject'] };
  const real = hsm.createDataObject.bind(hsm);
  let began!: () => void;
  const started = new Promise<void>((r) => (began = r));
  let release!: (ok: boolean) => void;
  const gate = new Promise<boolean>((r) => (release = r));
  hsm.createDataObject = async (obj) => {
    if (!obj.label.startsWith(RING_PREFIX)) return real(obj);
    hsm.createDataObject = real; // only the first ring write waits
    began();
    if (!(await gate)) throw vbiError('HSM_ERROR', 'the token failed while writing the ring record (test fault)');
    return real(obj);
  };
  return { started, open: () => release(true), fail: () => release(false) };
}

/** Whether `p` has settled by now (after the pending callbacks ran). */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(() => (done = true), () => (done = true));
  await new Promise((r) => setImmediate(r));
  return done;
}

/**
 * A fresh ledger with three funded meters; a download for the first whose ring write is held on
 * a gate, then one for each of the others. `fn` runs once the group behind the held one (the two,
 * or the first of them: a command behind that group waits for the map lock it holds) has reached
 * its COMMIT. The gate is opened and the service closed whatever `fn` did.
 */
async function withHeldGroup(fn: (f: LedgerFixture, held: HeldGroup) => Promise<void>): Promise<void> {
  const reached: string[] = [];
  const f = await ledgerFixture({ ledger: { faults: { beforeCommit: ({ meterId }) => void reached.push(meterId) } } });
  let gate: ReturnType<typeof gateRingAppend> | undefined;
  try {
    const ids = await meters(f, 3);
    const engine = f.service.engines[0];
    const journalBefore = await count(f, 'journal');
    gate = gateRingAppend(engine);
    const first = f.service.ledger.postageValueDownload({ meterId: ids[0], amount: 500 });
    await gate.started;
    reached.length = 0;
    const next = [ids[1], ids[2]].map((meterId) => f.service.ledger.postageValueDownload({ meterId, amount: 700 }));
    for (let i = 0; i < 200 && reached.length < 1; i++) await new Promise((r) => setTimeout(r, 10));
    expect([[ids[1]], [ids[1], ids[2]]].map((x) => JSON.stringify(x))).to.include(JSON.stringify(reached));
    const dr = async (meterId: string) => Number((await f.db.knex('meters').where({ meter_id: meterId }).first('descending_register')).descending_register);
    await fn(f, { ids, engine, journalBefore, gate, first, next, registers: () => Promise.all(ids.map(dr)) });
  } finally {
    gate?.open(); // a failed assertion must not leave the append waiting
    await f.service.close();
  }
}

interface HeldGroup {
  ids: string[];
  engine: PsdEngine;
  journalBefore: number;
  gate: ReturnType<typeof gateRingAppend>;
  first: Promise<unknown>;
  next: Array<Promise<unknown>>;
  /** The three meters' descending registers as the database holds them (another connection). */
  registers: () => Promise<number[]>;
}

describe('pipelined groups (the next group is prepared while the ring append of the one before runs)', function () {
  this.timeout(180_000);

  it('the next group signs and writes during the append, commits only after it; nothing of either is released before its record is in the ring', () =>
    // the next group reaches its COMMIT while the first group's record is still being written
    withHeldGroup(async (f, held) => {
      const { engine, first, next, gate } = held;
      expect(await settled(first)).to.equal(false);
      for (const p of next) expect(await settled(p)).to.equal(false);
      // seen from another connection: the first group committed, the next one not yet
      expect(await held.registers()).to.deep.equal([10_500, 10_000, 10_000]);

      gate.open();
      expect(await first).to.deep.include({ descendingRegister: 10_500 });
      for (const p of next) expect(await p).to.deep.include({ descendingRegister: 10_700 });
      expect(await rowInStep(f, engine)).to.equal(true);
      const all = await records(f, engine.hsm.serial);
      for (let i = 1; i < all.length; i++) expect(all[i].record.prevDigest.equals(digestOf(all[i - 1].bytes))).to.equal(true);
      expect(engine.status().state).to.equal('Idle');
      expect((await conservation(f.db.knex, { hsm: engine.hsm })).violations).to.deep.equal([]);
      expect(await verifyJournal({ db: f.db.knex, hsm: engine.hsm })).to.deep.include({ ok: true });
    }));

  it('the ring append fails: that group is not released, the group prepared behind it does not commit, and the ring rolls forward at the next check', () =>
    withHeldGroup(async (f, held) => {
      const { ids, engine, journalBefore, first, next, gate } = held;
      gate.fail();
      expect(await codeOf(first)).to.equal('CHECKPOINT_APPEND_FAILED');
      // the group behind it never committed (nor did the command after it); with no other module, they find none
      expect(await Promise.all(next.map((p) => codeOf(p)))).to.deep.equal(['NO_MODULE', 'NO_MODULE']);
      expect(await count(f, 'journal')).to.equal(journalBefore + 2); // the first download's records only
      expect(await held.registers()).to.deep.equal([10_500, 10_000, 10_000]);
      expect(f.service.ledger.rotation()[0].inRotation).to.equal(false);

      // the monitor's pass: the ring rolls forward to the committed group, the module serves again
      await f.service.ledger.checkModules();
      expect(f.service.ledger.rotation()[0].inRotation).to.equal(true);
      expect(await rowInStep(f, engine)).to.equal(true);
      expect((await moduleEvents(f.db.knex)).map((a) => a.kind)).to.include('checkpoint-rolled-forward');
      for (const meterId of [ids[1], ids[2]]) expect(await f.service.ledger.postageValueDownload({ meterId, amount: 700 })).to.deep.include({ descendingRegister: 10_700 });
      expect(engine.status().state).to.equal('Idle');
      expect((await conservation(f.db.knex, { hsm: engine.hsm })).violations).to.deep.equal([]);
      expect(await verifyJournal({ db: f.db.knex, hsm: engine.hsm })).to.deep.include({ ok: true });
    }));
});
