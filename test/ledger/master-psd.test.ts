import { expect } from 'chai';
import { conservation } from '@vbi/server/ledger/conservation';
import { verifyJournal } from '@vbi/server/ledger/journal-verify';
import { auditRecords } from '@vbi/server/ledger/audit-store';
import { openPackage } from '@vbi/server/module/package-seal';
import { MASTER_PSD_ID, masterRegisters } from '@vbi/server/module/commands/master-psd';
import { codeOf } from '../helpers/codes';
import { createIndicium, refund } from '../helpers/ledger-commands';
import { LedgerFixture, MAIL, asInsider, ledgerFixture } from '../helpers/ledger';

/**
 * The vendor's master PSD (docs/ledger.md, "The master PSD"): the pool is a sealed PSD package at
 * the meter map's reserved slot, moved only by module commands — stock from the post, and the
 * pool's side of every PVD and refund, each its own checkpoint record after the meter's in the
 * same transaction. Tried as the insider would with SQL: stock added to the row's copies, an
 * older pool row put back after the pool was spent (with and without its journal rows), the
 * sealed package removed so that the pool would be sealed again from edited copies, the whole
 * database one purchase back. Real SoftHSM2 and PostgreSQL.
 */
describe('the master PSD (the pool) is sealed and rollback-proof like a meter', function () {
  this.timeout(180_000);
  let f: LedgerFixture;

  afterEach(async () => {
    await f?.service.close();
    await f?.db.close();
  });

  const master = async () => {
    const row = await f.db.knex('pool').where({ pool_id: 1 }).first('package');
    return masterRegisters(await openPackage(f.service.engines[0].hsm, row.package, MASTER_PSD_ID));
  };
  const masterRecords = async () => (await f.db.knex('journal').where({ meter_id: MASTER_PSD_ID }).orderBy('journal_id').select('tx_type', 'amount')).map((r) => `${r.tx_type} ${r.amount}`);
  const check = async () => ({
    conservation: (await conservation(f.db.knex, { hsm: f.service.engines[0].hsm })).violations,
    journal: (await verifyJournal({ db: f.db.knex, hsm: f.service.engines[0].hsm })).ok,
  });

  it('purchases, downloads and refunds move the sealed master PSD, each in a record after the meter\'s; the honest books conserve and verify', async () => {
    f = await ledgerFixture();
    const { meterId } = await f.newMeter(1_000_000);
    await f.service.ledger.purchaseFromPost({ amount: 7_000, reference: 'POST-7' });
    await f.service.ledger.purchaseFromPost({ amount: 7_000, reference: 'POST-7' }); // a retry: entered once
    const pvd = await f.service.ledger.postageValueDownload({ meterId, amount: 50_000 });
    expect(pvd.descendingRegister).to.equal(50_000);
    expect(await master()).to.deep.equal({ purchased: 100_007_000, descendingRegister: 99_957_000, ascendingRegister: 50_000, refundRegister: 0 });
    await createIndicium(f.service.ledger, { meterId, postage: 1_000, mailpiece: MAIL });
    // a partial refund is paid out of the system: in the master PSD's refund register, not back in its DR
    await refund(f.service.ledger, { meterId, kind: 'partial', amount: 100, reason: 'spoiled', spoilageLimitBps: 10_000 });
    expect(await master()).to.deep.equal({ purchased: 100_007_000, descendingRegister: 99_957_000, ascendingRegister: 50_000, refundRegister: 100 });
    expect(await f.service.ledger.pool()).to.deep.equal({ purchased: 100_007_000, available: 99_957_000, refundsPaid: 100 });
    // a full refund brings the meter's remaining 48,900 mills back to the pool
    await refund(f.service.ledger, { meterId, kind: 'full', reason: 'closing' });
    expect(await master()).to.deep.equal({ purchased: 100_007_000, descendingRegister: 100_005_900, ascendingRegister: 1_100, refundRegister: 100 });
    expect(await masterRecords()).to.deep.equal(['pool-purchase 100000000', 'pool-purchase 7000', 'pool-transfer 50000', 'pool-transfer 100', 'pool-transfer 48900']);
    // each pool record follows its meter's record in the same module's chain
    const rows = await f.db.knex('journal').whereIn('tx_type', ['pvd', 'refund', 'pool-transfer']).orderBy('checkpoint_seq').select('meter_id', 'tx_type', 'checkpoint_seq');
    for (let i = 0; i < rows.length; i += 2) {
      expect([rows[i].meter_id, rows[i + 1].meter_id, rows[i + 1].checkpoint_seq - rows[i].checkpoint_seq]).to.deep.equal([meterId, MASTER_PSD_ID, 1]);
    }
    expect(await check()).to.deep.equal({ conservation: [], journal: true });
  });

  it('a download the master PSD cannot cover is POOL_EXHAUSTED and changes nothing — decided on the sealed package, not on the row\'s copies', async () => {
    f = await ledgerFixture({ stock: false });
    const { meterId } = await f.newMeter(10_000_000);
    await f.service.ledger.purchaseFromPost({ amount: 5_000, reference: 'POST-5' });
    // the insider raises the copies (and adds a purchase row to match): the module reads the package
    await asInsider(f.db.knex, async (trx) => {
      await trx('pool_purchases').insert({ amount: 9_000_000, reference: 'forged stock' });
      await trx.raw('UPDATE pool SET purchased = purchased + 9000000, available = available + 9000000 WHERE pool_id = 1');
    });
    const journalBefore = await f.db.knex('journal').count({ n: '*' }).first();
    expect(await codeOf(f.service.ledger.postageValueDownload({ meterId, amount: 5_001 }))).to.equal('POOL_EXHAUSTED');
    expect(await f.db.knex('journal').count({ n: '*' }).first()).to.deep.equal(journalBefore);
    expect(await f.service.ledger.registers(meterId)).to.deep.include({ descendingRegister: 0 });
    expect(await master()).to.deep.include({ descendingRegister: 5_000, purchased: 5_000 });
    const c = await conservation(f.db.knex, { hsm: f.service.engines[0].hsm });
    expect(c.violations).to.have.length(1);
    expect(c.violations[0]).to.match(/^pool: the row's register copies \(bought 9005000, available 9005000, refunds paid 0\) differ from the sealed master PSD \(bought 5000, available 5000/);
    // what the pool holds can still be spent, and the copies are set from the package again
    expect(await codeOf(f.service.ledger.postageValueDownload({ meterId, amount: 5_000 }))).to.equal('OK');
    expect(await f.service.ledger.pool()).to.deep.include({ available: 0, purchased: 5_000 });
  });

  it('an older pool row put back after the pool was spent (with its later journal rows deleted, or not): PACKAGE_STALE, audited; nothing is sold twice', async () => {
    f = await ledgerFixture({ stock: false });
    const k = f.db.knex;
    const a = (await f.newMeter(1_000_000)).meterId;
    const b = (await f.newMeter(1_000_000)).meterId;
    await f.service.ledger.purchaseFromPost({ amount: 10_000, reference: 'POST-10' });
    const oldPool = await k('pool').where({ pool_id: 1 }).first();
    const lastMasterJournal = (await k('journal').where({ meter_id: MASTER_PSD_ID }).max({ id: 'journal_id' }).first())?.id as number;
    await f.service.ledger.postageValueDownload({ meterId: a, amount: 10_000 });
    // the pool is empty; the insider puts its row back to before the download
    await asInsider(k, async (trx) => {
      await trx('pool').where({ pool_id: 1 }).update({ package: oldPool.package, record_counter: oldPool.record_counter, available: oldPool.available, purchased: oldPool.purchased });
    });
    expect(await codeOf(f.service.ledger.postageValueDownload({ meterId: b, amount: 10_000 }))).to.equal('PACKAGE_STALE');
    // and with the master PSD's later journal rows deleted, so its newest record names the old package
    await asInsider(k, (trx) => trx('journal').where({ meter_id: MASTER_PSD_ID }).where('journal_id', '>', lastMasterJournal).del());
    expect(await codeOf(f.service.ledger.postageValueDownload({ meterId: b, amount: 10_000 }))).to.equal('PACKAGE_STALE');
    expect(await f.service.ledger.registers(b)).to.deep.include({ descendingRegister: 0 });
    const stale = (await auditRecords(k)).filter((r) => r.kind === 'package-stale');
    expect(stale.map((r) => r.details.meterId)).to.deep.equal([MASTER_PSD_ID, MASTER_PSD_ID]);
    // the map the rings hold names the newer package at the master PSD's slot
    for (const r of stale) expect(r.reason).to.contain('is not the one the meter map');
    // the module keeps serving what does not touch the pool
    expect(f.service.engines[0].status().state).to.equal('Idle');
    expect(await codeOf(f.service.ledger.suspendMeter({ meterId: b, reason: 'test' }))).to.equal('OK');
    expect((await verifyJournal({ db: k, hsm: f.service.engines[0].hsm })).ok).to.equal(false);
  });

  it('the sealed package removed so that the pool would be sealed again from edited copies: PACKAGE_STALE (its slot is not empty in the rings\' map)', async () => {
    f = await ledgerFixture({ stock: false });
    const { meterId } = await f.newMeter(10_000_000);
    await f.service.ledger.purchaseFromPost({ amount: 1_000, reference: 'POST-1' });
    await asInsider(f.db.knex, async (trx) => {
      await trx('journal').where({ meter_id: MASTER_PSD_ID }).del();
      await trx.raw('UPDATE pool SET package = NULL, record_counter = NULL, purchased = 9000000, available = 9000000 WHERE pool_id = 1');
    });
    expect(await codeOf(f.service.ledger.postageValueDownload({ meterId, amount: 2_000 }))).to.equal('PACKAGE_STALE');
    expect(await codeOf(f.service.ledger.purchaseFromPost({ amount: 1, reference: 'POST-X' }))).to.equal('PACKAGE_STALE');
    expect(await f.service.ledger.registers(meterId)).to.deep.include({ descendingRegister: 0 });
    expect(await f.db.knex('pool_purchases').where({ reference: 'POST-X' })).to.deep.equal([]);
  });

  it('no meter command reaches the master PSD, and no meter takes its id', async () => {
    f = await ledgerFixture();
    expect(await codeOf(f.service.ledger.postageValueDownload({ meterId: MASTER_PSD_ID, amount: 1 }))).to.equal('UNKNOWN_METER');
    expect(await codeOf(f.service.ledger.suspendMeter({ meterId: MASTER_PSD_ID, reason: 'x' }))).to.equal('UNKNOWN_METER');
    expect(await codeOf(f.metergen.createMeter({ meterId: MASTER_PSD_ID, maxDescendingRegister: 1_000 }))).to.not.equal('OK');
    expect(await f.db.knex('meters').where({ meter_id: MASTER_PSD_ID })).to.deep.equal([]);
  });

  it('a database from before the master PSD: the first movement seals the pool from its columns, in the same record', async () => {
    f = await ledgerFixture({ stock: false });
    const { meterId } = await f.newMeter(1_000_000);
    // stock entered by an earlier version (before purchases were signed): the unsigned baseline
    await asInsider(f.db.knex, (trx) => trx.raw('UPDATE pool SET purchased = 8000, available = 8000, purchased_unsigned = 8000 WHERE pool_id = 1'));
    expect((await f.db.knex('pool').first('package')).package).to.equal(null);
    await f.service.ledger.postageValueDownload({ meterId, amount: 3_000 });
    expect(await master()).to.deep.equal({ purchased: 8_000, descendingRegister: 5_000, ascendingRegister: 3_000, refundRegister: 0 });
    expect(await masterRecords()).to.deep.equal(['pool-transfer 3000']);
    expect(await check()).to.deep.equal({ conservation: [], journal: true });
  });

  it('a purchase whose COMMIT fails leaves no stock and no record, the ring as it was; the same purchase then goes through', async () => {
    f = await ledgerFixture();
    const engine = f.service.engines[0];
    const before = await f.service.ledger.pool();
    const ringBefore = engine.status().ring.newestSeq;
    await f.db.knex.raw(`
      CREATE FUNCTION stock_commit_fails() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'the commit fails'; END $$;
      CREATE CONSTRAINT TRIGGER stock_commit_fails AFTER INSERT ON pool_purchases DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION stock_commit_fails();`);
    try {
      const failed = await f.service.ledger.purchaseFromPost({ amount: 3_000, reference: 'POST-LOST' }).then(() => null, (e: unknown) => e);
      expect(failed, 'the purchase must fail').to.not.equal(null);
    } finally {
      await f.db.knex.raw('DROP TRIGGER stock_commit_fails ON pool_purchases; DROP FUNCTION stock_commit_fails();');
    }
    expect(await f.service.ledger.pool()).to.deep.equal(before);
    expect(await f.db.knex('pool_purchases').where({ reference: 'POST-LOST' })).to.deep.equal([]);
    expect(engine.status().ring.newestSeq).to.equal(ringBefore);
    await f.service.ledger.purchaseFromPost({ amount: 3_000, reference: 'POST-LOST' });
    expect(await masterRecords()).to.deep.equal(['pool-purchase 100000000', 'pool-purchase 3000']);
    expect(await check()).to.deep.equal({ conservation: [], journal: true });
  });

  it('with no module in rotation a purchase is refused (NO_MODULE) and nothing is entered', async () => {
    f = await ledgerFixture();
    const before = await f.service.ledger.pool();
    await f.service.engines[0].hsm.close();
    expect(await codeOf(f.service.ledger.purchaseFromPost({ amount: 5_000, reference: 'POST-NONE' }))).to.equal('NO_MODULE');
    expect(await f.service.ledger.pool()).to.deep.equal(before);
    expect(await f.db.knex('pool_purchases').where({ reference: 'POST-NONE' })).to.deep.equal([]);
  });
});
