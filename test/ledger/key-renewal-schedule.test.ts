import { expect } from 'chai';
import { keysDue, renewDueKeys } from '@vbi/server/pki/key-renewal-schedule';
import { decodeIndicium } from '@vbi/core/indicium/layout';
import { createIndicium } from '../helpers/ledger-commands';
import { codeOf } from '../helpers/codes';
import { LedgerFixture, MAIL, ledgerFixture } from '../helpers/ledger';

/**
 * Indicium keys renewed ahead of expiry by the service's schedule (packages/server/src/pki/key-renewal-schedule.ts),
 * while the meter prints: real token, real PostgreSQL, the test CA.
 */
describe('indicium key renewal ahead of expiry (the service schedule)', function () {
  this.timeout(120_000);
  let f: LedgerFixture;
  before(async () => { f = await ledgerFixture(); });
  after(() => f.service.close());

  const serialOf = async (meterId: string): Promise<string> => (await f.db.knex('meters').where({ meter_id: meterId }).first('cert_serial')).cert_serial;

  it('renews every due key (not a closed meter) while the meter prints: no print fails, each indicium names a certificate that exists', async () => {
    const printing = (await f.newMeter(5_000_000)).meterId;
    const idle = (await f.newMeter(5_000_000)).meterId;
    const closed = (await f.newMeter(5_000_000)).meterId;
    await f.service.ledger.postageValueDownload({ meterId: printing, amount: 100_000 });
    await f.service.ledger.withdraw({ meterId: closed });
    const before = { printing: await serialOf(printing), idle: await serialOf(idle), closed: await serialOf(closed) };
    const expiry = (await f.db.knex('meters').where({ meter_id: printing }).first('key_expiry')).key_expiry as Date;
    expect(expiry).to.be.instanceOf(Date);

    // nothing expires within a day; everything but the closed meter within ten years
    expect(await keysDue(f.db.knex, new Date(Date.now() + 86_400_000))).to.not.include.members([printing, idle]);
    const due = await keysDue(f.db.knex, new Date(Date.now() + 3650 * 86_400_000));
    expect(due).to.include.members([printing, idle]);
    expect(due).to.not.include(closed);

    const codes: string[] = [await codeOf(createIndicium(f.service.ledger, { meterId: printing, postage: 100, mailpiece: MAIL }))];
    let stop = false;
    const prints = (async () => {
      while (!stop) codes.push(await codeOf(createIndicium(f.service.ledger, { meterId: printing, postage: 100, mailpiece: MAIL })));
    })();
    // the print loop stops whatever happens: left running, it would keep the test run from ending
    let run: Awaited<ReturnType<typeof renewDueKeys>>;
    try {
      run = await renewDueKeys({ db: f.db.knex, metergen: f.metergen, renewBeforeMs: 3650 * 86_400_000 });
    } finally {
      stop = true;
      await prints;
    }
    for (let i = 0; i < 3; i++) codes.push(await codeOf(createIndicium(f.service.ledger, { meterId: printing, postage: 100, mailpiece: MAIL })));

    expect(run.failed).to.deep.equal([]);
    expect(run.renewed.map((r) => r.meterId)).to.include.members([printing, idle]);
    expect(run.renewed.map((r) => r.meterId)).to.not.include(closed);
    expect(new Set(codes)).to.deep.equal(new Set(['OK']));
    expect(await serialOf(printing)).to.not.equal(before.printing);
    expect(await serialOf(idle)).to.not.equal(before.idle);
    expect(await serialOf(closed)).to.equal(before.closed);
    // every indicium names a certificate the verifier can find: the old one before the swap, the new one after
    const serials = new Set<string>();
    for (const row of await f.db.knex('indicia').where({ meter_id: printing }).orderBy('indicium_id').select('data', 'signature')) {
      serials.add(decodeIndicium(Buffer.concat([row.data, row.signature])).fields.certSerial);
    }
    expect([...serials].sort()).to.deep.equal([before.printing, await serialOf(printing)].sort());
    for (const s of serials) expect(await f.db.knex('certificates').where({ serial_hex: s }).first()).to.not.equal(undefined);
    // a second pass finds nothing due within a day
    expect((await renewDueKeys({ db: f.db.knex, metergen: f.metergen, renewBeforeMs: 86_400_000 })).renewed.map((r) => r.meterId)).to.not.include.members([printing, idle]);
  });
});
