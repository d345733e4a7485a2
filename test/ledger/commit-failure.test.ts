import { expect } from 'chai';
import { commitOrThrow } from '@vbi/server/db/commit';
import { freshDatabase } from '../helpers/db';
import { LedgerFixture, MAIL, ledgerFixture } from '../helpers/ledger';
import { createIndicium } from '../helpers/ledger-commands';

/**
 * A COMMIT that fails must never count as committed. knex's `commit()` on a transaction taken
 * with `await db.transaction()` resolves even when the COMMIT statement fails; the engine would
 * then append the group's record to the module's ring although the database never held it — the
 * next command finds the database "rolled back" and inhibits the module (found by the failover
 * test: the primary killed during a COMMIT). Here the COMMIT fails deterministically: a deferred
 * constraint trigger raises at COMMIT time.
 */
describe('a COMMIT that fails is not a commit', function () {
  this.timeout(120_000);

  it('commitOrThrow throws where knex\'s commit() resolves, and nothing is kept', async () => {
    const db = await freshDatabase();
    await db.knex.raw('CREATE TABLE commit_probe (a int UNIQUE DEFERRABLE INITIALLY DEFERRED)');
    const plain = await db.knex.transaction();
    await plain('commit_probe').insert([{ a: 1 }, { a: 1 }]);
    expect(await plain.commit().then(() => 'resolved', () => 'rejected')).to.equal('resolved'); // knex's behaviour
    await plain.executionPromise.catch(() => undefined);
    const checked = await db.knex.transaction();
    await checked('commit_probe').insert([{ a: 2 }, { a: 2 }]);
    const e = await commitOrThrow(checked).then(() => null, (x) => x as { code?: string });
    expect(e?.code).to.equal('23505');
    expect(await db.knex('commit_probe').count({ n: '*' })).to.deep.equal([{ n: 0 }]);
  });

  describe('in the transaction engine', () => {
    let f: LedgerFixture;
    before(async () => {
      f = await ledgerFixture();
    });
    after(async () => {
      await f?.service.close();
    });

    it('a print whose COMMIT fails fails, nothing enters the ring, and the module serves on without inhibition', async () => {
      const { meterId } = await f.newMeter(5_000_000);
      await f.service.ledger.postageValueDownload({ meterId, amount: 10_000 });
      const engine = f.service.engines[0];
      const ringBefore = engine.status().ring;
      await f.db.knex.raw(`
        CREATE FUNCTION fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'the commit fails'; END $$;
        CREATE CONSTRAINT TRIGGER journal_commit_fails AFTER INSERT ON journal DEFERRABLE INITIALLY DEFERRED
          FOR EACH ROW EXECUTE FUNCTION fail_at_commit();`);
      const failed = await createIndicium(f.service.ledger, { meterId, postage: 500, mailpiece: MAIL }).then(() => null, (e) => e as Error);
      expect(failed, 'the print must fail').to.not.equal(null);
      expect(engine.status().ring).to.deep.equal(ringBefore);
      await f.db.knex.raw('DROP TRIGGER journal_commit_fails ON journal; DROP FUNCTION fail_at_commit();');
      await f.service.checkModules();
      await createIndicium(f.service.ledger, { meterId, postage: 700, mailpiece: MAIL });
      expect(engine.status().state).to.be.oneOf(['Idle', 'User']);
      const row = await f.db.knex('meters').where({ meter_id: meterId }).first('ascending_register');
      expect(Number(row.ascending_register)).to.equal(700);
      expect(await f.db.knex('indicia').where({ meter_id: meterId }).select('postage')).to.deep.equal([{ postage: 700 }]);
    });
  });
});
