import { requireClone } from '../helpers/hsm';
import { createIndicium, correction, refund } from '../helpers/ledger-commands';
import { expect } from 'chai';
import { isVbiError } from '@vbi/core/errors';
import { verifyJournal } from '@vbi/server/ledger/journal-verify';
import { conservation } from '@vbi/server/ledger/conservation';
import { Service } from '@vbi/server/service';
import { Database } from '@vbi/server/db/database';
import { codeOf } from '../helpers/codes';
import { LedgerFixture, MAIL, ledgerFixture, restore, snapshot, testConfig, moduleEvents } from '../helpers/ledger';
import { createService } from '@vbi/server/service';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
import { meterHistory } from '@vbi/server/ops/meter-history';


/** Everything a command may change, for "changes nothing" assertions. */
async function state(db: Database): Promise<unknown> {
  const k = db.knex;
  return {
    meters: await k('meters').orderBy('meter_id').select('meter_id', 'package', 'record_counter', 'state'),
    journal: (await k('journal').count({ n: '*' }).first())?.n,
    modules: await k('modules').orderBy('module_serial').select('module_serial', 'checkpoint'),
    pool: await k('pool').first(),
    indicia: (await k('indicia').count({ n: '*' }).first())?.n,
  };
}

describe('transaction engine (SoftHSM2 + PostgreSQL)', function () {
  this.timeout(120_000);

  describe('one module', () => {
    let f: LedgerFixture;
    let s: Service;
    let meterId: string;
    before(async () => {
      f = await ledgerFixture();
      s = f.service;
    });
    after(() => s.close());
    beforeEach(async () => {
      ({ meterId } = await f.newMeter(5_000_000));
    });

    it('moves value pool → DR → AR and keeps conservation per meter and system-wide', async () => {
      const poolBefore = await s.ledger.pool();
      expect(await s.ledger.postageValueDownload({ meterId, amount: 2_000_000 })).to.deep.include({ descendingRegister: 2_000_000, ascendingRegister: 0 });
      const ind = await createIndicium(s.ledger, { meterId, postage: 680, mailpiece: MAIL });
      expect(ind).to.deep.include({ descendingRegister: 1_999_320, ascendingRegister: 680, postage: 680 });
      expect(ind.signature.length).to.equal(64);
      await createIndicium(s.ledger, { meterId, postage: 1_250, mailpiece: MAIL });
      expect(await refund(s.ledger, { meterId, kind: 'partial', amount: 19, reason: 'spoiled label' })).to.deep.include({ descendingRegister: 1_998_051, refundRegister: 19 });
      const pool = await s.ledger.pool();
      expect(pool.available).to.equal(poolBefore.available - 2_000_000);
      expect(pool.refundsPaid).to.equal(poolBefore.refundsPaid + 19);
      const c = await conservation(f.db.knex, { hsm: f.service.engines[0].hsm });
      expect(c.violations).to.deep.equal([]);
      expect(c.system.left).to.equal(c.system.right);
      expect(await verifyJournal({ db: f.db.knex, hsm: s.engines[0].hsm })).to.deep.include({ ok: true });
    });

    it('50 concurrent CreateIndicium on one meter with funds for 30: exactly 30 succeed', async () => {
      await s.ledger.postageValueDownload({ meterId, amount: 30 * 500 });
      const results = await Promise.allSettled(Array.from({ length: 50 }, () => createIndicium(s.ledger, { meterId, postage: 500, mailpiece: MAIL })));
      const ok = results.filter((r) => r.status === 'fulfilled');
      const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(ok).to.have.length(30);
      expect(failed).to.have.length(20);
      expect(failed.every((r) => isVbiError(r.reason, 'INSUFFICIENT_FUNDS')), String(failed[0]?.reason)).to.equal(true);
      expect(await s.ledger.registers(meterId)).to.deep.include({ ascendingRegister: 15_000, descendingRegister: 0 });
      // the piece numbers: 1..30, one per indicium, whatever order the 50 commands ran in (the refused took none)
      const seqs = (await f.db.knex('indicia').where({ meter_id: meterId }).orderBy('sequence').select('sequence')).map((r) => Number(r.sequence));
      expect(seqs).to.deep.equal(Array.from({ length: 30 }, (_, i) => i + 1));
      expect((await conservation(f.db.knex, { hsm: f.service.engines[0].hsm })).violations).to.deep.equal([]);
    });

    it('refunds: spoilage limit, full refund closes the meter and returns DR to the pool, withdraw', async () => {
      await s.ledger.postageValueDownload({ meterId, amount: 100_000 });
      await createIndicium(s.ledger, { meterId, postage: 50_000, mailpiece: MAIL });
      // 1% of AR 50,000 = 500 mills
      expect(await codeOf(refund(s.ledger, { meterId, kind: 'partial', amount: 501, reason: 'x' }))).to.equal('SPOILAGE_LIMIT');
      await refund(s.ledger, { meterId, kind: 'partial', amount: 500, reason: 'spoiled' });
      expect(await codeOf(refund(s.ledger, { meterId, kind: 'partial', amount: 1, reason: 'x' }))).to.equal('SPOILAGE_LIMIT');
      expect(await codeOf(s.ledger.withdraw({ meterId }))).to.equal('METER_NOT_EMPTY');
      const before = await s.ledger.pool();
      const r = await refund(s.ledger, { meterId, kind: 'full', reason: 'software uninstalled' });
      expect(r).to.deep.include({ refunded: 49_500, descendingRegister: 0 });
      expect((await s.ledger.pool()).available).to.equal(before.available + 49_500);
      expect((await s.ledger.registers(meterId)).state).to.equal('closed');
      expect(await codeOf(createIndicium(s.ledger, { meterId, postage: 1, mailpiece: MAIL }))).to.equal('METER_CLOSED');
      expect(await codeOf(s.ledger.withdraw({ meterId }))).to.equal('METER_CLOSED');
      expect((await conservation(f.db.knex, { hsm: f.service.engines[0].hsm })).violations).to.deep.equal([]);
    });

    it('correction indicium references the original; max DR and the pool bound a PVD', async () => {
      await s.ledger.postageValueDownload({ meterId, amount: 10_000 });
      const first = await createIndicium(s.ledger, { meterId, postage: 550, mailpiece: MAIL });
      const corr = await correction(s.ledger, { meterId, originalIndiciumId: first.indiciumId, additionalPostage: 130, mailpiece: MAIL });
      expect(corr).to.deep.include({ ascendingRegister: 680, descendingRegister: 9_320 });
      // a correction is a piece: the meter's second (the PVD before them counts none)
      expect([first.sequence, corr.sequence, first.fields.sequence, corr.fields.sequence]).to.deep.equal([1, 2, 1, 2]);
      const row = await f.db.knex('indicia').where({ indicium_id: corr.indiciumId }).first();
      expect(row).to.deep.include({ kind: 'correction', corrects: first.indiciumId, postage: 130 });
      expect(await codeOf(correction(s.ledger, { meterId, originalIndiciumId: 999_999, additionalPostage: 1, mailpiece: MAIL }))).to.equal('UNKNOWN_INDICIUM');
      expect(await codeOf(s.ledger.postageValueDownload({ meterId, amount: 5_000_000 }))).to.equal('MAX_DR_EXCEEDED');
      const pool = await s.ledger.pool();
      const big = await f.newMeter(pool.available + 10);
      expect(await codeOf(s.ledger.postageValueDownload({ meterId: big.meterId, amount: pool.available + 1 }))).to.equal('POOL_EXHAUSTED');
    });

    it('bad input gets a stable code and changes nothing', async () => {
      await s.ledger.postageValueDownload({ meterId, amount: 10_000 });
      const before = await state(f.db);
      const cases: Array<[string, () => Promise<unknown>, string]> = [
        ['negative', () => createIndicium(s.ledger, { meterId, postage: -1, mailpiece: MAIL }), 'INVALID_AMOUNT'],
        ['zero', () => createIndicium(s.ledger, { meterId, postage: 0, mailpiece: MAIL }), 'INVALID_AMOUNT'],
        ['fraction', () => s.ledger.postageValueDownload({ meterId, amount: 10.5 }), 'INVALID_AMOUNT'],
        ['string', () => s.ledger.postageValueDownload({ meterId, amount: '100' as unknown as number }), 'INVALID_AMOUNT'],
        ['NaN', () => createIndicium(s.ledger, { meterId, postage: NaN, mailpiece: MAIL }), 'INVALID_AMOUNT'],
        ['absurd', () => s.ledger.postageValueDownload({ meterId, amount: 1e15 }), 'INVALID_AMOUNT'],
        ['unsafe', () => s.ledger.postageValueDownload({ meterId, amount: 2 ** 60 }), 'INVALID_AMOUNT'],
        ['unknown meter', () => createIndicium(s.ledger, { meterId: 'VBI-NOPE', postage: 10, mailpiece: MAIL }), 'UNKNOWN_METER'],
        ['malformed meter id', () => createIndicium(s.ledger, { meterId: "x'; drop table meters;--", postage: 10, mailpiece: MAIL }), 'UNKNOWN_METER'],
        ['insufficient', () => createIndicium(s.ledger, { meterId, postage: 10_001, mailpiece: MAIL }), 'INSUFFICIENT_FUNDS'],
        ['refund kind', () => refund(s.ledger, { meterId, kind: 'most' as 'full', reason: '' }), 'BAD_REQUEST'],
      ];
      for (const [what, call, code] of cases) expect(await codeOf(call()), what).to.equal(code);
      expect(await state(f.db)).to.deep.equal(before);
    });
  });

  describe('two modules with cloned package keys', () => {
    it('serve the same meters interleaved; rings, module table and journal stay consistent', async function () {
      requireClone(this);
      const f = await ledgerFixture({ modules: 2 });
      try {
        const s = f.service;
        const meters = await Promise.all([1, 2, 3].map(() => f.newMeter(1_000_000)));
        for (const m of meters) await s.ledger.postageValueDownload({ meterId: m.meterId, amount: 100_000 });
        await Promise.all(meters.flatMap((m) => Array.from({ length: 8 }, () => createIndicium(s.ledger, { meterId: m.meterId, postage: 1_000, mailpiece: MAIL }))));
        const rows = await f.db.knex('modules').orderBy('module_serial');
        expect(rows).to.have.length(2);
        for (const e of s.engines) {
          const row = rows.find((r) => r.module_serial === e.hsm.serial);
          expect(row.checkpoint_seq, 'both modules served').to.be.greaterThan(1);
          expect((row.checkpoint as Buffer).equals(e.ringEntries().at(-1)!.bytes)).to.equal(true);
        }
        const byModule = await f.db.knex('journal').select('module_serial').count({ n: '*' }).groupBy('module_serial');
        expect(byModule).to.have.length(2);
        for (const m of meters) expect(await s.ledger.registers(m.meterId)).to.deep.include({ ascendingRegister: 8_000, descendingRegister: 92_000 });
        expect((await conservation(f.db.knex, { hsm: f.service.engines[0].hsm })).violations).to.deep.equal([]);
        expect(await verifyJournal({ db: f.db.knex, hsm: s.engines[1].hsm })).to.deep.include({ ok: true });
      } finally {
        await f.service.close();
      }
    });
  });

  describe('crash between module prepare and COMMIT', () => {
    it('releases nothing, leaves the ring as it was, and the next command runs on the database state', async () => {
      let crash = false;
      const f = await ledgerFixture({ ledger: { faults: { beforeCommit: () => { if (crash) throw new Error('simulated crash before COMMIT'); } } } });
      try {
        const s = f.service;
        const { meterId } = await f.newMeter(1_000_000);
        await s.ledger.postageValueDownload({ meterId, amount: 10_000 });
        const ringBefore = s.engines[0].ringEntries().map((e) => e.checkpoint.seq);
        crash = true;
        const err = await createIndicium(s.ledger, { meterId, postage: 4_000, mailpiece: MAIL }).then(() => null, (e) => e);
        crash = false;
        expect(String(err)).to.contain('simulated crash');
        expect(await f.db.knex('indicia').where({ meter_id: meterId }).count({ n: '*' }).first()).to.deep.equal({ n: 0 });
        // commit-then-checkpoint: the ring never saw the uncommitted record
        expect(s.engines[0].ringEntries().map((e) => e.checkpoint.seq)).to.deep.equal(ringBefore);
        const row = await f.db.knex('modules').first();
        expect((row.checkpoint as Buffer).equals(s.engines[0].ringEntries().at(-1)!.bytes)).to.equal(true);

        const ok = await createIndicium(s.ledger, { meterId, postage: 1_000, mailpiece: MAIL });
        expect(ok).to.deep.include({ ascendingRegister: 1_000, descendingRegister: 9_000 });
        expect((await moduleEvents(f.db.knex)).map((a) => a.kind)).to.deep.equal([]);
        expect((await conservation(f.db.knex, { hsm: f.service.engines[0].hsm })).violations).to.deep.equal([]);
        expect(await verifyJournal({ db: f.db.knex, hsm: s.engines[0].hsm })).to.deep.include({ ok: true });
      } finally {
        await f.service.close();
      }
    });
  });

  describe('crash between COMMIT and the ring append (in process)', () => {
    it('releases nothing; the next command rolls the ring forward and runs on the committed state', async () => {
      let crash = false;
      const f = await ledgerFixture({ ledger: { faults: { afterCommit: () => { if (crash) throw new Error('simulated crash after COMMIT'); } } } });
      try {
        const s = f.service;
        const { meterId } = await f.newMeter(1_000_000);
        await s.ledger.postageValueDownload({ meterId, amount: 10_000 });
        crash = true;
        const err = await createIndicium(s.ledger, { meterId, postage: 4_000, mailpiece: MAIL }).then(() => null, (e) => e);
        crash = false;
        expect(String(err)).to.contain('simulated crash after COMMIT');
        expect(await f.db.knex('indicia').where({ meter_id: meterId }).count({ n: '*' }).first()).to.deep.equal({ n: 1 });
        const ok = await createIndicium(s.ledger, { meterId, postage: 1_000, mailpiece: MAIL });
        expect(ok).to.deep.include({ ascendingRegister: 5_000, descendingRegister: 5_000 });
        expect((await moduleEvents(f.db.knex)).map((a) => a.kind)).to.deep.equal(['checkpoint-rolled-forward']);
        expect(s.engines[0].status().state).to.equal('Idle');
        expect((await verifyJournal({ db: f.db.knex, hsm: s.engines[0].hsm })).findings).to.deep.equal([]);
      } finally {
        await f.service.close();
      }
    });
  });

  describe('process killed (SIGKILL) around COMMIT', () => {
    for (const mode of ['before', 'after'] as const) {
      it(mode === 'before'
        ? 'before COMMIT: nothing released, nothing committed, the next process goes on without an audit or an inhibition'
        : 'after COMMIT, before the ring append: the next process rolls the ring forward; nothing lost, nothing inhibited', async () => {
        const f = await ledgerFixture();
        const { meterId } = await f.newMeter(1_000_000);
        await f.service.ledger.postageValueDownload({ meterId, amount: 10_000 });
        await f.service.close(); // the child process owns the token now
        const child = await run(process.execPath, [join(__dirname, '..', 'helpers', 'crash-child.js'), mode, f.db.url, meterId, ...f.labels], { env: process.env })
          .then(() => 'exited', (e: { signal?: string }) => e.signal ?? 'failed');
        expect(child).to.equal('SIGKILL');
        const committed = Number((await f.db.knex('indicia').where({ meter_id: meterId }).count({ n: '*' }).first())?.n);
        expect(committed).to.equal(mode === 'before' ? 0 : 1);

        const again = await createService({ config: testConfig(f.labels), db: f.db });
        try {
          expect(again.engines[0].status().state).to.equal('Idle');
          const row = await f.db.knex('modules').first();
          expect((row.checkpoint as Buffer).equals(again.engines[0].ringEntries().at(-1)!.bytes)).to.equal(true);
          const ok = await createIndicium(again.ledger, { meterId, postage: 1_000, mailpiece: MAIL });
          expect(ok).to.deep.include(mode === 'before'
            ? { ascendingRegister: 1_000, descendingRegister: 9_000 }
            : { ascendingRegister: 5_000, descendingRegister: 5_000 });
          const audit = await moduleEvents(f.db.knex);
          expect(audit.map((a) => a.kind)).to.deep.equal(mode === 'before' ? [] : ['checkpoint-rolled-forward']);
          if (mode === 'after') expect(audit[0].details.checkpoint).to.deep.include({ meterId, type: 'indicium', amount: 4_000 });
          expect((await conservation(f.db.knex, { hsm: again.engines[0].hsm })).violations).to.deep.equal([]);
          expect(await verifyJournal({ db: f.db.knex, hsm: again.engines[0].hsm })).to.deep.include({ ok: true });
        } finally {
          await again.close();
        }
      });
    }
  });

  describe('tampering from outside the service is detected before the next signature', () => {
    let f: LedgerFixture;
    let meterId: string;
    beforeEach(async () => {
      f = await ledgerFixture();
      ({ meterId } = await f.newMeter(1_000_000));
      await f.service.ledger.postageValueDownload({ meterId, amount: 50_000 });
    });
    afterEach(() => f.service.close());

    const signed = async () => Number((await f.db.knex('indicia').count({ n: '*' }).first())?.n);

    it('an edited package: PACKAGE_MAC_INVALID', async () => {
      const m = await f.db.knex('meters').where({ meter_id: meterId }).first();
      const pkg = Buffer.from(m.package);
      pkg[40] ^= 0x04;
      await f.db.knex('meters').where({ meter_id: meterId }).update({ package: pkg });
      expect(await codeOf(createIndicium(f.service.ledger, { meterId, postage: 100, mailpiece: MAIL }))).to.equal('PACKAGE_MAC_INVALID');
      expect(await signed()).to.equal(0);
    });

    it('an older copy of the meter row put back (replay of the previous package): PACKAGE_STALE', async () => {
      const old = await f.db.knex('meters').where({ meter_id: meterId }).first();
      await createIndicium(f.service.ledger, { meterId, postage: 30_000, mailpiece: MAIL });
      await f.db.knex('meters').where({ meter_id: meterId }).update({ package: old.package, record_counter: old.record_counter, ascending_register: old.ascending_register, descending_register: old.descending_register });
      expect(await codeOf(createIndicium(f.service.ledger, { meterId, postage: 30_000, mailpiece: MAIL }))).to.equal('PACKAGE_STALE');
      expect(await signed()).to.equal(1);
    });

    it("the module's checkpoint row deleted: module inhibited, NO_MODULE", async () => {
      await f.db.knex('modules').del();
      expect(await codeOf(createIndicium(f.service.ledger, { meterId, postage: 100, mailpiece: MAIL }))).to.equal('NO_MODULE');
      expect(f.service.engines[0].status().state).to.equal('Inhibited');
      expect((await moduleEvents(f.db.knex)).map((a) => a.kind)).to.deep.equal(['module-inhibited']);
      expect(await signed()).to.equal(0);
    });

    it('a snapshot restored exactly one committed transaction back, with no command after it: inhibited', async () => {
      await snapshot(f.db, 'snap1');
      await createIndicium(f.service.ledger, { meterId, postage: 100, mailpiece: MAIL }); // the transaction the restore loses
      await restore(f.db, 'snap1');
      const before = await signed();
      expect(await codeOf(createIndicium(f.service.ledger, { meterId, postage: 100, mailpiece: MAIL }))).to.equal('NO_MODULE');
      const st = f.service.engines[0].status();
      expect(st.state).to.equal('Inhibited');
      expect(st.reason).to.contain('rolled back');
      expect(await signed()).to.equal(before);
    });

    it('a snapshot restored several transactions back: inhibited', async () => {
      await snapshot(f.db, 'snap2');
      for (let i = 0; i < 3; i++) await createIndicium(f.service.ledger, { meterId, postage: 100, mailpiece: MAIL });
      await restore(f.db, 'snap2');
      expect(await codeOf(createIndicium(f.service.ledger, { meterId, postage: 100, mailpiece: MAIL }))).to.equal('NO_MODULE');
      expect(f.service.engines[0].status().reason).to.contain('rolled back');
    });
  });

  describe('operability', () => {
    let f: LedgerFixture;
    let meterId: string;
    before(async () => {
      f = await ledgerFixture();
      ({ meterId } = await f.newMeter(1_000_000));
      await f.service.ledger.postageValueDownload({ meterId, amount: 20_000 });
      for (const p of [100, 200, 300]) await createIndicium(f.service.ledger, { meterId, postage: p, mailpiece: MAIL });
    });
    after(() => f.service.close());

    it("prints a meter's registers and history from the verified journal", async () => {
      const h = await meterHistory({ db: f.db.knex, hsm: f.service.engines[0].hsm, meterId });
      expect(h.meter).to.deep.include({ meterId, ascendingRegister: 600, descendingRegister: 19_400, licence: 'licensed', licenceId: `TEST-${meterId}` });
      expect(h.history.map((l) => [l.type, l.amount])).to.deep.equal([
        ['meter-create', 0], ['meter-certify', 0], ['meter-assign', 0], ['license', 0], ['pvd', 20_000], ['indicium', 100], ['indicium', 200], ['indicium', 300],
      ]);
      expect(h.history[3].details).to.deep.include({ licenceId: `TEST-${meterId}` });
      expect(h.history[5].details).to.deep.include({ postage: 100, kind: 'postage' });
    });

    it('reports the first broken row of an edited or shortened journal', async () => {
      const k = f.db.knex;
      expect(await verifyJournal({ db: k, hsm: f.service.engines[0].hsm })).to.deep.include({ ok: true, rowsChecked: 10 }); // with the master PSD's purchase and PVD records
      const rows = await k('journal').orderBy('checkpoint_seq');
      // someone with database rights goes around the append-only trigger
      await k.transaction(async (trx) => {
        await trx.raw("SET LOCAL session_replication_role = 'replica'");
        await trx('journal').where({ journal_id: rows[2].journal_id, meter_id: meterId }).update({ amount: 1 });
      });
      let r = await verifyJournal({ db: k, hsm: f.service.engines[0].hsm });
      expect(r.ok).to.equal(false);
      expect(r.firstBroken).to.deep.include({ journalId: rows[2].journal_id, reason: 'row columns differ from its checkpoint record' });
      await k.transaction(async (trx) => {
        await trx.raw("SET LOCAL session_replication_role = 'replica'");
        await trx('journal').where({ journal_id: rows[2].journal_id, meter_id: meterId }).update({ amount: rows[2].amount });
        await trx('journal').where({ journal_id: rows[1].journal_id, meter_id: meterId }).del();
      });
      r = await verifyJournal({ db: k, hsm: f.service.engines[0].hsm });
      expect(r.firstBroken?.journalId).to.equal(rows[2].journal_id);
      expect(r.firstBroken?.reason).to.contain('hash chain broken');
    });
  });
});
