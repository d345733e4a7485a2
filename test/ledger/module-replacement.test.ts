import { expect } from 'chai';
import { createService } from '@vbi/server/service';
import { conservation } from '@vbi/server/ledger/conservation';
import { verifyJournal } from '@vbi/server/ledger/journal-verify';
import { createIndicium } from '../helpers/ledger-commands';
import { codeOf } from '../helpers/codes';
import { LedgerFixture, MAIL, ledgerFixture, moduleEvents, provisionModules, testConfig } from '../helpers/ledger';
import { requireClone } from '../helpers/hsm';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { CryptoModule } from '@vbi/server/hsm/crypto-module';
import { closeLibrary, openLibrary } from '@vbi/server/hsm/pkcs11-library';
import { exportJournal } from '@vbi/server/ledger/journal-export';
import { replayJournal } from '@vbi/server/ledger/journal-replay';
import { restore, snapshot } from '../helpers/ledger';
import { approvalsFor, installTestOfficers } from '../helpers/officers';

/**
 * A module token lost (WO 01/29778's recovery with an off-site module): a second module, cloned
 * from the shared package keys in a ceremony, takes over the database. Its ring is empty while
 * the database's meter map has moved on, so its first command inhibits it, until M officers approve that it
 * continue from the database's map (docs/checkpoint.md, docs/key-ceremony.md); then every meter
 * goes on from its registers, and nothing of the lost module's history is re-spendable.
 */
describe('a lost module token replaced by a cloned module, with officer approval', function () {
  this.timeout(180_000);
  let f: LedgerFixture;

  before(function () {
    requireClone(this);
  });
  afterEach(async () => {
    await f?.service.close();
  });

  it('the clone refuses the map that is ahead of its empty ring and inhibits itself; reinstated only with the approvals; the meters go on from their registers', async () => {
    const [lost, offsite] = await provisionModules(2); // the off-site module: cloned shared keys, its own identity
    await installTestOfficers(offsite, 2); // its SO installs the officers at its ceremony
    f = await ledgerFixture({ labels: [lost] });
    const m1 = (await f.newMeter(5_000_000)).meterId;
    const m2 = (await f.newMeter(5_000_000)).meterId;
    for (const m of [m1, m2]) await f.service.ledger.postageValueDownload({ meterId: m, amount: 100_000 });
    for (let i = 0; i < 3; i++) await createIndicium(f.service.ledger, { meterId: m1, postage: 700, mailpiece: MAIL });
    await createIndicium(f.service.ledger, { meterId: m2, postage: 900, mailpiece: MAIL });
    await f.service.close();

    // the first module's token is gone: the service is configured with the off-site module only
    f.service = await createService({ config: testConfig([offsite]), db: f.db });
    const engine = f.service.engines[0];
    // its first command finds the database's map ahead of every ring: refused, and the module inhibits itself
    expect(await codeOf(createIndicium(f.service.ledger, { meterId: m1, postage: 700, mailpiece: MAIL }))).to.equal('NO_MODULE');
    expect(engine.status().state).to.equal('Inhibited');
    expect(engine.status().reason).to.match(/meter map is ahead/);
    expect(await codeOf(createIndicium(f.service.ledger, { meterId: m2, postage: 900, mailpiece: MAIL }))).to.equal('NO_MODULE');
    expect(await codeOf(f.service.ledger.reinstate({ moduleSerial: engine.hsm.serial, officer: 'Operator', acceptCheckpoint: null, approvals: [] })))
      .to.equal('OFFICER_APPROVAL_REQUIRED');
    expect(await codeOf(f.service.ledger.reinstate({ moduleSerial: engine.hsm.serial, officer: 'Operator', acceptCheckpoint: null, approvals: await approvalsFor(engine, null, 1) })))
      .to.equal('OFFICER_APPROVAL_REQUIRED');
    expect(engine.status().state).to.equal('Inhibited');

    const rec = await f.service.ledger.reinstate({ moduleSerial: engine.hsm.serial, officer: 'Operator', acceptCheckpoint: null, approvals: await approvalsFor(engine, null) });
    expect(rec?.details.approvedBy).to.deep.equal(['Alice Officer', 'Bob Officer']);
    expect(engine.status().state).to.equal('Idle');
    const before = await f.db.knex('meters').whereIn('meter_id', [m1, m2]).orderBy('meter_id').select('meter_id', 'ascending_register', 'descending_register');
    expect(await codeOf(createIndicium(f.service.ledger, { meterId: m1, postage: 700, mailpiece: MAIL }))).to.equal('OK');
    expect(await codeOf(createIndicium(f.service.ledger, { meterId: m2, postage: 900, mailpiece: MAIL }))).to.equal('OK');
    const after = await f.db.knex('meters').whereIn('meter_id', [m1, m2]).orderBy('meter_id').select('meter_id', 'ascending_register', 'descending_register');
    for (const [i, row] of after.entries()) {
      const postage = row.meter_id === m1 ? 700 : 900;
      expect(Number(row.ascending_register)).to.equal(Number(before[i].ascending_register) + postage);
      expect(Number(row.descending_register)).to.equal(Number(before[i].descending_register) - postage);
    }
    expect(Number(after.find((r) => r.meter_id === m1).ascending_register)).to.equal(4 * 700);
    expect((await conservation(f.db.knex)).violations).to.deep.equal([]);
    expect((await verifyJournal({ db: f.db.knex, hsm: engine.hsm })).findings).to.deep.equal([]);
    expect((await moduleEvents(f.db.knex)).map((r) => r.kind)).to.include.members(['module-inhibited', 'module-reinstated']);
  });
  it('the module token and the database\'s newest work lost together: the backup, the journal export replayed with the off-site module, then officers reinstate it on the rebuilt database', async () => {
    const [lost, offsite] = await provisionModules(2);
    await installTestOfficers(offsite, 2);
    f = await ledgerFixture({ labels: [lost] });
    const m1 = (await f.newMeter(5_000_000)).meterId;
    await f.service.ledger.postageValueDownload({ meterId: m1, amount: 100_000 });
    await createIndicium(f.service.ledger, { meterId: m1, postage: 700, mailpiece: MAIL });
    await snapshot(f.db, 'offsite_backup'); // the last backup the archive can reach
    // later work: only the journal export (taken off-site after it) holds it
    const m2 = (await f.newMeter(5_000_000)).meterId;
    for (const m of [m1, m2]) await f.service.ledger.postageValueDownload({ meterId: m, amount: 40_000 });
    await createIndicium(f.service.ledger, { meterId: m1, postage: 1_100, mailpiece: MAIL });
    await createIndicium(f.service.ledger, { meterId: m2, postage: 650, mailpiece: MAIL });
    const dir = mkdtempSync(join(process.env.VBI_TEST_ROOT as string, 'offsite-export-'));
    await exportJournal({ db: f.db.knex, hsm: f.service.engines[0].hsm, dir });
    const expected = await f.db.knex('meters').orderBy('meter_id').select('meter_id', 'package', 'ascending_register', 'descending_register');
    const indicia = await f.db.knex('indicia').orderBy('indicium_id').select('indicium_id', 'meter_id', 'postage', 'signature');
    await f.service.close();

    // both lost: the database goes back to the backup, the first module's token is gone
    await restore(f.db, 'offsite_backup');
    const config = testConfig([offsite]);
    const lib = openLibrary(config.hsm.library, config.hsm.softhsm2Conf, config.hsm.profile, config.hsm.initParameters, config.hsm.threads);
    const hsm = await CryptoModule.start({ library: lib, module: config.hsm.modules[0], hsm: config.hsm });
    try {
      // the off-site module holds the deployment's shared keys: it verifies the export and opens its packages
      const report = await replayJournal({ db: f.db.knex, hsm, modules: [hsm], dir });
      expect(report.replayed).to.be.greaterThan(0);
      expect(report.modules.map((m) => [m.moduleSerial, m.state])).to.have.deep.members([
        [report.modules.find((m) => m.moduleSerial !== hsm.serial)!.moduleSerial, 'not-configured'], [hsm.serial, 'in-step']]);
    } finally {
      await hsm.close();
      await closeLibrary(lib);
    }
    expect(await f.db.knex('meters').orderBy('meter_id').select('meter_id', 'package', 'ascending_register', 'descending_register')).to.deep.equal(expected);
    expect(await f.db.knex('indicia').orderBy('indicium_id').select('indicium_id', 'meter_id', 'postage', 'signature')).to.deep.equal(indicia);

    // the off-site module takes over: its empty ring refuses the rebuilt map until M officers approve
    f.service = await createService({ config, db: f.db });
    const engine = f.service.engines[0];
    expect(await codeOf(createIndicium(f.service.ledger, { meterId: m2, postage: 100, mailpiece: MAIL }))).to.equal('NO_MODULE');
    expect(engine.status().state).to.equal('Inhibited');
    await f.service.ledger.reinstate({ moduleSerial: engine.hsm.serial, officer: 'Operator', acceptCheckpoint: null, approvals: await approvalsFor(engine, null) });
    for (const [meterId, ascending] of [[m1, 700 + 1_100], [m2, 650]] as const) {
      expect(await codeOf(createIndicium(f.service.ledger, { meterId, postage: 100, mailpiece: MAIL }))).to.equal('OK');
      const row = await f.db.knex('meters').where({ meter_id: meterId }).first('ascending_register');
      expect(Number(row.ascending_register)).to.equal(ascending + 100);
    }
    expect((await conservation(f.db.knex)).violations).to.deep.equal([]);
    expect((await verifyJournal({ db: f.db.knex, hsm: engine.hsm })).findings).to.deep.equal([]);
  });
});
