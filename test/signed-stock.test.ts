import { expect } from 'chai';
import { conservation } from '../src/ledger/conservation';
import { verifyAuditLog } from '../src/ledger/audit-verify';
import { readAuditHead } from '../src/module/audit-chain';
import { AuditRecord } from '../src/module/audit';
import { codeOf } from './helpers/codes';
import { LedgerFixture, asInsider, ledgerFixture } from './helpers/ledger';

/**
 * Stock bought from the post is signed (docs/ledger.md, "Stock from the post"): each purchase is a
 * `pool-purchased` record in a module's signed audit chain, written in the purchase's own
 * transaction, and conservation counts only signed stock. Tried as the insider would: stock rows
 * added with the pool moved to match (which the system equation alone does not see), then a
 * purchase record forged to match as well.
 */
describe('stock bought from the post is signed into a module\'s audit chain; unsigned stock is found', function () {
  this.timeout(120_000);
  let f: LedgerFixture;

  beforeEach(async () => {
    f = await ledgerFixture();
  });
  afterEach(async () => {
    await f?.service.close();
    await f?.db.close();
  });

  const stockRecords = async () => (await f.db.knex('audit_log').where({ kind: 'pool-purchased' }).orderBy('audit_id').select('record'))
    .map((r: { record: AuditRecord }) => r.record);
  const auditKeys = async () => {
    const hsm = f.service.engines[0].hsm;
    return [{ serial: hsm.serial, identitySpki: hsm.identityPublicKey(), head: await readAuditHead(hsm) }];
  };

  it('every purchase is signed in its own transaction; the honest pool conserves and the log verifies', async () => {
    await f.service.ledger.purchaseFromPost({ amount: 7_000, reference: 'POST-7' });
    await f.service.ledger.purchaseFromPost({ amount: 7_000, reference: 'POST-7' }); // a retry: entered once, signed once
    const records = await stockRecords();
    expect(records.map((r) => [r.details.reference, r.details.amount])).to.deep.equal([['test stock', 100_000_000], ['POST-7', 7_000]]);
    expect(records.every((r) => r.moduleSerial === f.service.engines[0].hsm.serial)).to.equal(true);
    expect((await readAuditHead(f.service.engines[0].hsm))?.seq).to.equal(Math.max(...records.map((r) => r.seq)));
    expect((await conservation(f.db.knex)).violations).to.deep.equal([]);
    expect((await verifyAuditLog(f.db.knex, await auditKeys())).findings).to.deep.equal([]);
  });

  it('stock an insider adds, with the pool moved to match, is found; a purchase record forged to match fails its signature', async () => {
    await asInsider(f.db.knex, async (trx) => {
      await trx('pool_purchases').insert({ amount: 9_000_000, reference: 'forged stock' });
      await trx.raw('UPDATE pool SET purchased = purchased + 9000000, available = available + 9000000 WHERE pool_id = 1');
    });
    const c = await conservation(f.db.knex);
    // the system equation holds (the insider kept it): only the signed stock shows the difference
    expect(c.system.left).to.equal(c.system.right);
    expect(c.violations).to.have.length(1);
    expect(c.violations[0]).to.match(/^stock: the pool says 109000000 mills bought from the post, the modules' signed purchase records 100000000/);

    // the insider copies a real record, renames it and gives it the next number: the amounts add up, the signature does not
    const [real] = await stockRecords();
    const forged: AuditRecord = { ...real, seq: Math.max(...(await f.db.knex('audit_log').whereNotNull('seq').pluck('seq')).map(Number)) + 1, details: { ...real.details, reference: 'forged stock', amount: 9_000_000 } };
    await asInsider(f.db.knex, (trx) => trx('audit_log').insert({ kind: forged.kind, module_serial: forged.moduleSerial, at: forged.at, seq: forged.seq, record: JSON.stringify(forged) }));
    expect((await conservation(f.db.knex)).violations).to.deep.equal([]);
    const kinds = (await verifyAuditLog(f.db.knex, await auditKeys())).findings.filter((x) => x.seq === forged.seq).map((x) => x.kind);
    expect(kinds).to.include.members(['bad-signature', 'beyond-head']);
  });

  it('a purchase whose COMMIT fails leaves no stock, no record and the token\'s head where it was; the next purchase chains on', async () => {
    const hsm = f.service.engines[0].hsm;
    const headBefore = await readAuditHead(hsm);
    const before = await f.service.ledger.pool();
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
    expect((await stockRecords()).map((r) => r.details.reference)).to.deep.equal(['test stock']);
    expect(await readAuditHead(hsm)).to.deep.equal(headBefore);
    // the chain goes on from the head the token kept: no gap, no break recorded
    await f.service.ledger.purchaseFromPost({ amount: 3_000, reference: 'POST-LOST' });
    expect((await stockRecords()).map((r) => r.details.reference)).to.deep.equal(['test stock', 'POST-LOST']);
    expect((await verifyAuditLog(f.db.knex, await auditKeys())).findings).to.deep.equal([]);
    expect((await conservation(f.db.knex)).violations).to.deep.equal([]);
  });

  it('with no module in rotation a purchase is refused (NO_MODULE) and nothing is entered', async () => {
    const before = await f.service.ledger.pool();
    await f.service.engines[0].hsm.close();
    expect(await codeOf(f.service.ledger.purchaseFromPost({ amount: 5_000, reference: 'POST-NONE' }))).to.equal('NO_MODULE');
    expect(await f.service.ledger.pool()).to.deep.equal(before);
    expect(await f.db.knex('pool_purchases').where({ reference: 'POST-NONE' })).to.deep.equal([]);
    expect((await stockRecords()).map((r) => r.details.reference)).to.deep.equal(['test stock']);
  });
});
