import { expect } from 'chai';
import { conservation } from '@vbi/server/ledger/conservation';
import { verifyJournal } from '@vbi/server/ledger/journal-verify';
import { decodeCheckpoint, digestOf } from '@vbi/server/module/checkpoint';
import { requireFunds } from '@vbi/server/module/commands/guards';
import { DispatchResult } from '@vbi/server/module/psd-engine';
import { codeOf } from '../helpers/codes';
import { LedgerFixture, ledgerFixture, moduleEvents } from '../helpers/ledger';

/*
 * Side-by-side steps of a group (docs/ledger.md, "Group commit"): the module runs the commands
 * of different meters at the same time, each for the place it expects in the group, then chains
 * them in order; their rows go in one statement. What must hold: a refusal fails alone and the
 * commands after it are run again for their real place (their results name their own record);
 * rows that cannot be written make the group run again one step at a time; a crash before
 * COMMIT releases nothing. Real SoftHSM2 and PostgreSQL.
 */

type Result = DispatchResult<{ ranFor: number; descendingRegister: number }>;

async function meters(f: LedgerFixture, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const { meterId } = await f.newMeter(1_000_000);
    await f.service.ledger.postageValueDownload({ meterId, amount: 10_000 });
    out.push(meterId);
  }
  return out;
}

/** The module's records in the journal, oldest first. */
async function records(f: LedgerFixture) {
  const hsm = f.service.engines[0].hsm;
  const rows = await f.db.knex('journal').where({ module_serial: hsm.serial }).orderBy('checkpoint_seq').select('checkpoint');
  return Promise.all(rows.map(async (r: { checkpoint: Buffer }) => ({ bytes: r.checkpoint, record: await decodeCheckpoint(hsm, r.checkpoint) })));
}

describe('side-by-side steps of a group', function () {
  this.timeout(180_000);

  /**
   * A side-by-side step that moves `amount` mills of the meter's DR to its AR (as a print does,
   * without the indicium: these tests are about the group, not the print) and reports the record
   * it was run for; `runs` counts its runs per meter.
   */
  function spendStep(f: LedgerFixture, runs: Map<string, number>, meterId: string, amount: number, brokenRows = false) {
    return () => f.service.ledger.run({
      meterId, type: 'inquiry', sideBySide: true,
      execute: async (pkg, ctx) => {
        runs.set(meterId, (runs.get(meterId) ?? 0) + 1);
        requireFunds(pkg!, amount);
        const next = { ...pkg!, descendingRegister: pkg!.descendingRegister - amount, ascendingRegister: pkg!.ascendingRegister + amount };
        return { package: next, type: 'inquiry' as const, amount: 0, result: { descendingRegister: next.descendingRegister, ranFor: ctx.checkpointSeq } };
      },
      after: async (trx) => {
        if (brokenRows) await trx.raw('SELECT 1 / 0'); // a statement the database refuses
      },
      details: () => ({ amount }),
    }) as Promise<Result>;
  }

  /** The first command goes alone at once; the others wait for it and form one group. */
  const together = (fns: Array<() => Promise<Result>>) => Promise.allSettled(fns.map((fn) => fn()));

  async function expectHonestChain(f: LedgerFixture): Promise<void> {
    const all = await records(f);
    for (let i = 1; i < all.length; i++) {
      expect(all[i].record.seq).to.equal(all[i - 1].record.seq + 1);
      expect(all[i].record.prevDigest.equals(digestOf(all[i - 1].bytes))).to.equal(true);
      expect(all[i].record.mapEpoch).to.equal(all[i - 1].record.mapEpoch + 1);
    }
    const engine = f.service.engines[0];
    expect(engine.status().state).to.equal('Idle');
    expect((await conservation(f.db.knex, { hsm: engine.hsm })).violations).to.deep.equal([]);
    expect(await verifyJournal({ db: f.db.knex, hsm: engine.hsm })).to.deep.include({ ok: true });
  }

  it('a command the module refuses fails alone; those after it run again for their real place, and each result names its own record', async () => {
    const f = await ledgerFixture();
    try {
      const ids = await meters(f, 6);
      const runs = new Map<string, number>();
      const statsBefore = f.service.ledger.commitStats();
      const out = await together(ids.map((meterId, i) => spendStep(f, runs, meterId, i === 2 ? 20_000 : 500)));
      const codes = await Promise.all(out.map((o) => (o.status === 'fulfilled' ? 'OK' : codeOf(Promise.reject(o.reason)))));
      expect(codes).to.deep.equal(['OK', 'OK', 'INSUFFICIENT_FUNDS', 'OK', 'OK', 'OK']);
      const stats = f.service.ledger.commitStats();
      // the lone first command, then one group of the four the module did not refuse
      expect({ groups: stats.groups - statsBefore.groups, commands: stats.commands - statsBefore.commands }).to.deep.equal({ groups: 2, commands: 5 });
      // the two before the refused one ran once; the three after it ran again, one place earlier
      expect(ids.map((m) => runs.get(m))).to.deep.equal([1, 1, 1, 2, 2, 2]);
      const done = out.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
      for (const r of done) expect(r.result.ranFor).to.equal(r.record.seq);
      const seqs = done.map((r) => r.record.seq);
      expect(seqs.slice(1)).to.deep.equal([seqs[1], seqs[1] + 1, seqs[1] + 2, seqs[1] + 3]);
      for (const [i, meterId] of ids.entries()) expect(await f.service.ledger.registers(meterId)).to.deep.include({ descendingRegister: i === 2 ? 10_000 : 9_500 });
      await expectHonestChain(f);
      // the map nodes the group stored prove every meter's package: each is served again
      for (const meterId of ids) expect(await codeOf(f.service.ledger.postageValueDownload({ meterId, amount: 1 }))).to.equal('OK');
      expect((await moduleEvents(f.db.knex)).map((a) => a.kind)).to.deep.equal([]);
    } finally {
      await f.service.close();
    }
  });

  it('the insider puts two meters\' rows back while others run side by side: those two fail alone (PACKAGE_STALE), nothing of them is spent twice', async () => {
    const f = await ledgerFixture();
    try {
      const ids = await meters(f, 6);
      const stale = [ids[2], ids[4]];
      // after a download, both rows go back to the package before it (its funds to spend twice)
      const old = await f.db.knex('meters').whereIn('meter_id', stale).select('meter_id', 'package', 'record_counter', 'descending_register');
      for (const meterId of stale) await f.service.ledger.postageValueDownload({ meterId, amount: 1_000 });
      for (const o of old) {
        await f.db.knex('meters').where({ meter_id: o.meter_id }).update({ package: o.package, record_counter: o.record_counter, descending_register: o.descending_register });
      }
      const runs = new Map<string, number>();
      const out = await together(ids.map((meterId) => spendStep(f, runs, meterId, 700)));
      const codes = await Promise.all(out.map((o) => (o.status === 'fulfilled' ? 'OK' : codeOf(Promise.reject(o.reason)))));
      expect(codes).to.deep.equal(['OK', 'OK', 'PACKAGE_STALE', 'OK', 'PACKAGE_STALE', 'OK']);
      for (const o of out) if (o.status === 'fulfilled') expect(o.value.result.ranFor).to.equal(o.value.record.seq);
      for (const meterId of ids) expect(await f.service.ledger.registers(meterId)).to.deep.include({ descendingRegister: stale.includes(meterId) ? 10_000 : 9_300 });
      // each refusal audited once; the module keeps serving
      expect((await moduleEvents(f.db.knex)).map((a) => a.kind)).to.deep.equal(['package-stale', 'package-stale']);
      expect(f.service.engines[0].status().state).to.equal('Idle');
      const all = await records(f);
      for (let i = 1; i < all.length; i++) expect(all[i].record.prevDigest.equals(digestOf(all[i - 1].bytes))).to.equal(true);
      // the put-back rows stay refused: the map still holds the packages after the downloads
      for (const meterId of stale) expect(await codeOf(f.service.ledger.postageValueDownload({ meterId, amount: 1 }))).to.equal('PACKAGE_STALE');
    } finally {
      await f.service.close();
    }
  });

  it("a command whose rows the database refuses: the group runs again one step at a time, it fails alone, the others commit", async () => {
    const f = await ledgerFixture();
    try {
      const ids = await meters(f, 5);
      const runs = new Map<string, number>();
      const journalBefore = Number((await f.db.knex('journal').count({ n: '*' }).first())?.n);
      const out = await together(ids.map((meterId, i) => spendStep(f, runs, meterId, 250, i === 3)));
      expect(out.map((o) => (o.status === 'fulfilled' ? 'OK' : String(o.reason)))).to.deep.equal(['OK', 'OK', 'OK', 'error: SELECT 1 / 0 - division by zero', 'OK']);
      // the group's four ran side by side, then each again in the one-at-a-time run
      expect(ids.map((m) => runs.get(m))).to.deep.equal([1, 2, 2, 2, 2]);
      for (const o of out) if (o.status === 'fulfilled') expect(o.value.result.ranFor).to.equal(o.value.record.seq);
      for (const [i, meterId] of ids.entries()) expect(await f.service.ledger.registers(meterId)).to.deep.include({ descendingRegister: i === 3 ? 10_000 : 9_750 });
      expect(Number((await f.db.knex('journal').count({ n: '*' }).first())?.n)).to.equal(journalBefore + 4);
      await expectHonestChain(f);
    } finally {
      await f.service.close();
    }
  });

  it('a crash before COMMIT in a side-by-side group: nothing of it committed or released, the ring as it was', async () => {
    let crashOn: string | undefined;
    const f = await ledgerFixture({ ledger: { faults: { beforeCommit: ({ meterId }) => { if (meterId === crashOn) throw new Error('simulated crash before COMMIT'); } } } });
    try {
      const ids = await meters(f, 5);
      const engine = f.service.engines[0];
      const runs = new Map<string, number>();
      crashOn = ids[2];
      const journalBefore = Number((await f.db.knex('journal').count({ n: '*' }).first())?.n);
      const out = await together(ids.map((meterId) => spendStep(f, runs, meterId, 300)));
      crashOn = undefined;
      expect(out.map((o) => (o.status === 'fulfilled' ? 'OK' : String(o.reason).includes('simulated crash') ? 'crash' : String(o.reason))))
        .to.deep.equal(['OK', 'crash', 'crash', 'crash', 'crash']);
      for (const [i, meterId] of ids.entries()) expect(await f.service.ledger.registers(meterId)).to.deep.include({ descendingRegister: i === 0 ? 9_700 : 10_000 });
      expect(Number((await f.db.knex('journal').count({ n: '*' }).first())?.n)).to.equal(journalBefore + 1);
      const row = await f.db.knex('modules').where({ module_serial: engine.hsm.serial }).first('checkpoint');
      expect((row.checkpoint as Buffer).equals(engine.ringEntries().at(-1)!.bytes)).to.equal(true);
      const again = await together(ids.map((meterId) => spendStep(f, runs, meterId, 300)));
      expect(again.map((o) => o.status)).to.deep.equal(ids.map(() => 'fulfilled'));
      await expectHonestChain(f);
    } finally {
      await f.service.close();
    }
  });
});
