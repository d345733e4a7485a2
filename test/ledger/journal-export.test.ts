import { MASTER_PSD_ID } from '@vbi/server/module/commands/master-psd';
import { expect } from 'chai';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isVbiError } from '@vbi/core/errors';
import { exportJournal, readExport } from '@vbi/server/ledger/journal-export';
import { replayJournal } from '@vbi/server/ledger/journal-replay';
import { conservation } from '@vbi/server/ledger/conservation';
import { verifyJournal } from '@vbi/server/ledger/journal-verify';
import { CryptoModule } from '@vbi/server/hsm/crypto-module';
import { readAuditHead } from '@vbi/server/module/audit-chain';
import { LedgerFixture, MAIL, asInsider, ledgerFixture, restore, snapshot } from '../helpers/ledger';
import { createIndicium, correction, refund } from '../helpers/ledger-commands';

/**
 * The journal export (docs/journal-export.md) against a real token and a real PostgreSQL: what
 * it holds, that any change to its files is found, and that a database put back to an earlier
 * state (as a DBA's snapshot restore leaves it) is rolled forward from it to exactly the state
 * the module's ring holds — or, when the export lacks the newest records, that those are listed
 * as presumed spent and the module still refuses the database.
 */
describe('journal export: append-only, sealed, and replayed onto a restored database', function () {
  this.timeout(300_000);
  let f: LedgerFixture;
  let hsm: CryptoModule;
  let dir: string;
  let meterId: string;

  before(async () => {
    f = await ledgerFixture();
    hsm = f.service.engines[0].hsm as CryptoModule;
    dir = mkdtempSync(join(process.env.VBI_TEST_ROOT as string, 'journal-export-'));
    ({ meterId } = await f.newMeter(5_000_000));
    await f.service.ledger.postageValueDownload({ meterId, amount: 200_000 });
    const first = await createIndicium(f.service.ledger, { meterId, postage: 680, mailpiece: MAIL });
    await correction(f.service.ledger, { meterId, originalIndiciumId: first.indiciumId, additionalPostage: 120, mailpiece: MAIL });
    await refund(f.service.ledger, { meterId, kind: 'partial', amount: 5, reason: 'spoiled label' });
  });
  after(async () => {
    await f?.service.close();
    await f?.db.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const journalCount = async () => Number((await f.db.knex('journal').count<{ n: string }[]>({ n: '*' }))[0].n);
  const auditRows = () => f.db.knex('audit_log').whereNotNull('seq').orderBy([{ column: 'module_serial' }, { column: 'seq' }]).select('module_serial', 'seq', 'record');
  const exportDir = (name: string) => join(dir, name);

  it('exports every journal row once, one sealed segment per run, each with the rows its command wrote', async () => {
    const out = await exportJournal({ db: f.db.knex, hsm, dir: exportDir('main') });
    const audited = (await auditRows()).length;
    expect(audited).to.be.greaterThan(0); // the module's signed audit records ride along (service-started, at least)
    expect(out).to.deep.equal({ segment: 1, entries: await journalCount(), total: await journalCount(), audit: audited });
    expect(await exportJournal({ db: f.db.knex, hsm, dir: exportDir('main') })).to.deep.include({ segment: null, entries: 0 });
    await createIndicium(f.service.ledger, { meterId, postage: 300, mailpiece: MAIL });
    const second = await exportJournal({ db: f.db.knex, hsm, dir: exportDir('main') });
    expect(second).to.deep.equal({ segment: 2, entries: 1, total: await journalCount(), audit: 0 });
    const read = await readExport(hsm, exportDir('main'));
    expect(read.findings).to.deep.equal([]);
    // one line chain for journal entries and audit records: segment 1 holds both, segment 2 the new row
    const lastOfFirst = out.total + out.audit;
    expect(read.seals.map((s) => [s.firstN, s.lastN])).to.deep.equal([[1, lastOfFirst], [lastOfFirst + 1, lastOfFirst + 1]]);
    expect(read.audit.map((r) => [r.moduleSerial, r.seq])).to.deep.equal((await auditRows()).map((r) => [r.module_serial, Number(r.seq)]));
    // each print record carries its indicium rows, the refund its refund row, the PVD the pool's move in its record
    const types = read.entries.map((e) => e.journal.type);
    for (const t of ['meter-create', 'meter-certify', 'meter-assign', 'pvd', 'indicium', 'correction', 'refund']) expect(types).to.include(t);
    const last = read.entries[read.entries.length - 1];
    expect(last.rows.indicia?.map((r) => Number(r.postage))).to.deep.equal([300]);
    expect(read.entries.find((e) => e.journal.type === 'refund')!.rows.refunds?.map((r) => Number(r.amount))).to.deep.equal([5]);
    expect(read.entries.find((e) => e.journal.type === 'meter-certify')!.rows.certificates).to.have.length(1);
    expect(read.entries.find((e) => e.journal.type === 'meter-assign')!.rows.accounts?.map((r) => Number(r.account_id))).to.deep.equal([f.accountId]);
    // nothing secret in clear: the package and payload are the sealed bytes of the database
    const row = await f.db.knex('meters').where({ meter_id: meterId }).first('package');
    expect(last.journal.package).to.equal(row.package.toString('base64'));
  });

  /** A copy of the export with one change, and what reading it finds. */
  async function tampered(name: string, change: (d: string) => void): Promise<string[]> {
    const d = exportDir(name);
    cpSync(exportDir('main'), d, { recursive: true });
    change(d);
    return (await readExport(hsm, d)).findings.map((x) => x.reason);
  }
  const lines = (d: string, k = 1) => readFileSync(join(d, `segment-00000${k}.jsonl`), 'utf8').split('\n').filter(Boolean);
  const writeLines = (d: string, ls: string[], k = 1) => writeFileSync(join(d, `segment-00000${k}.jsonl`), ls.join('\n') + '\n');

  it('finds every change to the export: a line edited, removed, duplicated or reordered, a seal forged or missing', async () => {
    expect(await tampered('edit', (d) => {
      const ls = lines(d);
      const e = JSON.parse(ls[3]);
      e.journal.amount += 1;
      ls[3] = JSON.stringify(e);
      writeLines(d, ls);
    })).to.include.members(['the line hash chain is broken before this entry (a line edited, removed or reordered)', 'the entry differs from its checkpoint record']);
    expect((await tampered('remove', (d) => writeLines(d, lines(d).filter((_, i) => i !== 2)))).join('\n')).to.match(/entry 4 where entry 3 belongs/);
    expect((await tampered('duplicate', (d) => { const ls = lines(d); writeLines(d, [...ls.slice(0, 3), ls[2], ...ls.slice(3)]); })).join('\n')).to.match(/hash chain is broken/);
    expect((await tampered('reorder', (d) => { const ls = lines(d); [ls[1], ls[2]] = [ls[2], ls[1]]; writeLines(d, ls); })).join('\n')).to.match(/where entry 2 belongs/);
    expect(await tampered('unsealed', (d) => unlinkSync(join(d, 'segment-000001.seal.json')))).to.deep.equal(['segment 1 is missing (or its seal is)']);
    expect(await tampered('forged-seal', (d) => {
      const seal = JSON.parse(readFileSync(join(d, 'segment-000002.seal.json'), 'utf8'));
      seal.lastN += 1; // a line appended, the seal adjusted without the module
      writeFileSync(join(d, 'segment-000002.seal.json'), JSON.stringify(seal));
    })).to.deep.equal(['the seal of segment 2 does not verify (edited, or not made by a module of this deployment)']);
    // the package is bound by its checkpoint record: another meter state does not pass
    expect(await tampered('package', (d) => {
      const ls = lines(d);
      const withPackages = ls.map((l) => JSON.parse(l)).filter((e) => e.journal?.package);
      const e = withPackages[withPackages.length - 1];
      e.journal.package = withPackages[0].journal.package;
      writeLines(d, ls.map((l) => (JSON.parse(l).n === e.n ? JSON.stringify(e) : l)));
    })).to.include('the package is not the one its checkpoint record names');
    // an audit record edited, or one taken out of the export, breaks the line chain like any line
    expect((await tampered('audit-edit', (d) => {
      const ls = lines(d);
      const at = ls.findIndex((l) => JSON.parse(l).audit);
      const e = JSON.parse(ls[at]);
      e.audit.reason = 'nothing happened';
      ls[at] = JSON.stringify(e);
      writeLines(d, ls);
    })).join('\n')).to.match(/hash chain is broken/);
    // nothing is appended to a broken export
    const refused = await exportJournal({ db: f.db.knex, hsm, dir: exportDir('edit') }).catch((e) => e);
    expect(isVbiError(refused, 'JOURNAL_EXPORT_BROKEN'), String(refused)).to.equal(true);
    expect(readdirSync(exportDir('edit')).filter((n) => n.endsWith('.seal.json'))).to.have.length(2);
  });

  it('an indicium row an insider edited before the export ran is found; the export stays usable and a replay lists the row as left out', async () => {
    const printed = await createIndicium(f.service.ledger, { meterId, postage: 333, mailpiece: MAIL });
    const row = await f.db.knex('indicia').where({ indicium_id: printed.indiciumId }).first('signature');
    const forged = Buffer.from(row.signature);
    forged[forged.length - 1] ^= 1;
    await asInsider(f.db.knex, (trx) => trx('indicia').where({ indicium_id: printed.indiciumId }).update({ signature: forged }));
    await exportJournal({ db: f.db.knex, hsm, dir: exportDir('edited-db') });
    const read = await readExport(hsm, exportDir('edited-db'));
    expect(read.findings.map((x) => x.reason)).to.deep.equal([`indicium row ${printed.indiciumId}: its signature does not verify`]);
    // the export stays usable: a later run appends to it
    await createIndicium(f.service.ledger, { meterId, postage: 10, mailpiece: MAIL });
    expect((await exportJournal({ db: f.db.knex, hsm, dir: exportDir('edited-db') })).entries).to.equal(1);
    // a replay does not refuse the export (here onto a database already in step: nothing to replay)
    const report = await replayJournal({ db: f.db.knex, hsm, modules: [hsm], dir: exportDir('edited-db') });
    expect(report.replayed).to.equal(0);
    expect(report.indiciaLeftOut).to.deep.equal([{ indiciumId: printed.indiciumId, reason: `indicium row ${printed.indiciumId}: its signature does not verify` }]);
    await asInsider(f.db.knex, (trx) => trx('indicia').where({ indicium_id: printed.indiciumId }).update({ signature: row.signature }));
  });

  it('a database put back to an earlier snapshot is rolled forward from the export to the ring\'s state, and the meter goes on', async () => {
    await snapshot(f.db, 'before_later_work');
    // a command of the master PSD: in the export like a meter's
    await f.service.ledger.purchaseFromPost({ amount: 5_000, reference: 'later stock', operator: 'Olga Operator' });
    await f.service.ledger.postageValueDownload({ meterId, amount: 50_000 });
    await createIndicium(f.service.ledger, { meterId, postage: 410, mailpiece: MAIL });
    const other = await f.newMeter(1_000_000);
    await f.service.ledger.postageValueDownload({ meterId: other.meterId, amount: 7_000 });
    await f.service.ledger.revokeLicence({ meterId: other.meterId, operator: 'Olga Operator', reason: 'licence withdrawn by the post' });
    await exportJournal({ db: f.db.knex, hsm, dir: exportDir('main') });
    const revocationReports = () => f.db.knex('licence_revocation_reports').select('meter_id', 'licence_id', 'reason', 'revoked_at', 'status');
    const expected = {
      revocations: await revocationReports(),
      meters: await f.db.knex('meters').orderBy('meter_id').select('meter_id', 'slot', 'state', 'record_counter', 'package', 'ascending_register', 'descending_register', 'cert_serial', 'account_id'),
      map: await f.db.knex('meter_map').select('epoch', 'root', 'next_slot'),
      modules: await f.db.knex('modules').select('module_serial', 'checkpoint', 'checkpoint_seq'),
      pool: await f.db.knex('pool').first('purchased', 'available', 'refunds_paid'),
      indicia: await f.db.knex('indicia').orderBy('indicium_id').select('indicium_id', 'meter_id', 'postage', 'data', 'signature', 'module_serial', 'checkpoint_seq'),
      journal: await journalCount(),
      audit: await auditRows(),
    };
    await restore(f.db, 'before_later_work');
    expect((await auditRows()).length).to.be.lessThan(expected.audit.length);
    expect(expected.revocations).to.have.length(1);
    expect(await revocationReports()).to.deep.equal([]);
    // a tampered export is refused and changes nothing
    cpSync(exportDir('main'), exportDir('replay-tampered'), { recursive: true });
    const ls = lines(exportDir('replay-tampered'), 3);
    const e = JSON.parse(ls[0]);
    e.journal.amount = 1;
    writeLines(exportDir('replay-tampered'), [JSON.stringify(e), ...ls.slice(1)], 3);
    const journalBefore = await journalCount();
    const refused = await replayJournal({ db: f.db.knex, hsm, modules: [hsm], dir: exportDir('replay-tampered') }).catch((x) => x);
    expect(isVbiError(refused, 'JOURNAL_EXPORT_BROKEN'), String(refused)).to.equal(true);
    expect(await journalCount()).to.equal(journalBefore);

    // stock given to the replay by hand: the restored pool is the sealed master PSD, whose purchases are in the export: refused, nothing changed
    const byHand = await replayJournal({ db: f.db.knex, hsm, modules: [hsm], dir: exportDir('main'), stock: [{ reference: 'later stock', amount: 5_000 }] }).catch((x) => x);
    expect(isVbiError(byHand, 'BAD_REQUEST'), String(byHand)).to.equal(true);
    expect(await journalCount()).to.equal(journalBefore);

    // the stock bought after the snapshot comes back with the master PSD's record in the export
    const report = await replayJournal({ db: f.db.knex, hsm, modules: [hsm], dir: exportDir('main') });
    expect(report.replayed).to.equal(expected.journal - journalBefore);
    expect(report.stockFromRecords).to.deep.equal([]);
    expect(await f.db.knex('pool_purchases').where({ reference: 'later stock' }).select('amount', 'entered_by')).to.deep.equal([{ amount: 5_000, entered_by: 'Olga Operator' }]);
    expect(report.modules).to.have.length(1);
    expect(report.modules[0]).to.deep.include({ state: 'in-step', missing: [] });
    expect(report.indiciaLeftOut).to.deep.equal([]);
    expect(await f.db.knex('meters').orderBy('meter_id').select('meter_id', 'slot', 'state', 'record_counter', 'package', 'ascending_register', 'descending_register', 'cert_serial', 'account_id')).to.deep.equal(expected.meters);
    expect(await f.db.knex('meter_map').select('epoch', 'root', 'next_slot')).to.deep.equal(expected.map);
    expect(await f.db.knex('modules').select('module_serial', 'checkpoint', 'checkpoint_seq')).to.deep.equal(expected.modules);
    expect(await f.db.knex('pool').first('purchased', 'available', 'refunds_paid')).to.deep.equal(expected.pool);
    // the revocation after the snapshot is owed to the licensing authority again, with its reason
    expect(await revocationReports()).to.deep.equal(expected.revocations);
    expect(expected.revocations[0]).to.deep.include({ meter_id: other.meterId, licence_id: `TEST-${other.meterId}`, reason: 'licence withdrawn by the post', status: 'due' });
    expect(await f.db.knex('indicia').orderBy('indicium_id').select('indicium_id', 'meter_id', 'postage', 'data', 'signature', 'module_serial', 'checkpoint_seq')).to.deep.equal(expected.indicia);
    // the audit records the restore took back are in the database again, up to the token's head
    expect(report.auditRecords).to.be.greaterThan(0);
    expect(await auditRows()).to.deep.equal(expected.audit);
    const head = await readAuditHead(hsm);
    expect(head?.seq).to.equal(Math.max(...expected.audit.filter((r) => r.module_serial === hsm.serial).map((r) => Number(r.seq))));
    const verified = await verifyJournal({ db: f.db.knex, hsm });
    expect(verified.findings).to.deep.equal([]);
    expect((await conservation(f.db.knex, { hsm })).violations).to.deep.equal([]);
    // the module builds on the rolled-forward database: the meter prints on from its registers
    const next = await createIndicium(f.service.ledger, { meterId, postage: 90, mailpiece: MAIL });
    expect(next.indiciumId).to.be.greaterThan(Math.max(...expected.indicia.map((r) => Number(r.indicium_id))));
  });

  it('stock given to the replay by hand (--stock) onto a database whose pool is the sealed master PSD is refused: it would move the copies, not the package', async () => {
    await exportJournal({ db: f.db.knex, hsm, dir: exportDir('main') });
    const poolBefore = await f.db.knex('pool').first();
    const refused = await replayJournal({ db: f.db.knex, hsm, modules: [hsm], dir: exportDir('main'), stock: [{ reference: 'stock after the export', amount: 2_000 }] }).catch((x) => x);
    expect(isVbiError(refused, 'BAD_REQUEST'), String(refused)).to.equal(true);
    expect(await f.db.knex('pool_purchases').where({ reference: 'stock after the export' })).to.deep.equal([]);
    expect(await f.db.knex('pool').first()).to.deep.equal(poolBefore);
    expect((await conservation(f.db.knex, { hsm })).violations).to.deep.equal([]);
  });

  it('an export without the newest records: the replay lists what the ring holds beyond it as presumed spent, and the module still refuses the database', async () => {
    await exportJournal({ db: f.db.knex, hsm, dir: exportDir('main') });
    await snapshot(f.db, 'before_unexported');
    await f.service.ledger.postageValueDownload({ meterId, amount: 3_000 });
    await createIndicium(f.service.ledger, { meterId, postage: 2_500, mailpiece: MAIL });
    const registers = await f.service.ledger.registers(meterId);
    await restore(f.db, 'before_unexported');
    const report = await replayJournal({ db: f.db.knex, hsm, modules: [hsm], dir: exportDir('main') });
    expect(report.replayed).to.equal(0);
    const m = report.modules[0];
    expect(m.state).to.equal('ring-ahead');
    // the ring holds each group's last record: the download's is the master PSD's, after the meter's
    expect(m.missing.map((x) => [x.meterId, x.type, x.amount])).to.deep.equal([[MASTER_PSD_ID, 'pool-transfer', 3_000], [meterId, 'indicium', 2_500]]);
    expect(m.missing[1]).to.deep.include({ ascendingRegister: registers.ascendingRegister, descendingRegister: registers.descendingRegister });
    // the database is still behind the ring: nothing is signed on it
    const refused = await createIndicium(f.service.ledger, { meterId, postage: 100, mailpiece: MAIL }).catch((x) => x);
    expect(isVbiError(refused), String(refused)).to.equal(true);
  });
});
