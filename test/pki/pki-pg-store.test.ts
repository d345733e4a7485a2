import { expect } from 'chai';
import { isVbiError, vbiError } from '@vbi/core/errors';
import { MeterGen } from '@vbi/server/pki/metergen';
import { PgMeterStore } from '@vbi/server/ledger/pg-meter-store';
import { LedgerFixture, ledgerFixture } from '../helpers/ledger';
import { testPki } from '../helpers/pki';

/** MeterGen on the PostgreSQL store: a failed step leaves no usable meter behind. */
describe('MeterGen on PostgreSQL', function () {
  this.timeout(120_000);
  let f: LedgerFixture;
  before(async () => {
    f = await ledgerFixture();
  });
  after(() => f.service.close());

  it('a refused certificate request leaves no meter row and nothing to assign', async () => {
    const pki = await testPki();
    const refusing = new MeterGen({
      store: new PgMeterStore(f.service.ledger), ra: pki.ra, trust: pki.trust,
      ca: { requestCertificate: async () => { throw vbiError('CA_REQUEST_REFUSED', 'refused for the test'); } },
    });
    const pooled = await f.service.ledger.unassignedMeters();
    const err = await refusing.createMeter({ meterId: 'T-REFUSED-1', maxDescendingRegister: 1_000 }).then(() => null, (e) => e);
    expect(isVbiError(err, 'CA_REQUEST_REFUSED'), String(err)).to.equal(true);
    expect(await f.db.knex('meters').where({ meter_id: 'T-REFUSED-1' }).first()).to.equal(undefined);
    expect(await f.service.ledger.unassignedMeters()).to.equal(pooled);
    const assign = await f.service.ledger.assignMeter({ accountId: f.accountId, meterId: 'T-REFUSED-1' }).then(() => null, (e) => e);
    expect(isVbiError(assign, 'UNKNOWN_METER'), String(assign)).to.equal(true);
  });

  it('an uncertified meter cannot be assigned or discarded once certified', async () => {
    const store = new PgMeterStore(f.service.ledger);
    await store.createUncertifiedMeter({ meterId: 'T-UNCERT-1', algorithm: 'ec-p256', maxDescendingRegister: 1_000 });
    const assign = await f.service.ledger.assignMeter({ accountId: f.accountId, meterId: 'T-UNCERT-1' }).then(() => null, (e) => e);
    expect(isVbiError(assign, 'METER_NOT_CERTIFIED'), String(assign)).to.equal(true);
    await store.discardMeter('T-UNCERT-1');
    expect(await f.db.knex('meters').where({ meter_id: 'T-UNCERT-1' }).first()).to.equal(undefined);
    const { meterId } = await f.newMeter(1_000);
    const discard = await store.discardMeter(meterId).then(() => null, (e) => e);
    expect(isVbiError(discard, 'METER_ALREADY_CERTIFIED'), String(discard)).to.equal(true);
  });
});
