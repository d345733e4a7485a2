import { expect } from 'chai';
import { createService } from '../src/service';
import { conservation } from '../src/ledger/conservation';
import { verifyJournal } from '../src/ledger/journal-verify';
import { createIndicium } from './helpers/ledger-commands';
import { codeOf } from './helpers/codes';
import { LedgerFixture, MAIL, ledgerFixture, moduleEvents, provisionModules, testConfig } from './helpers/ledger';
import { requireClone } from './helpers/hsm';
import { approvalsFor, installTestOfficers } from './helpers/officers';

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
});
