import { expect } from 'chai';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Knex } from 'knex';
import { VbiClient } from '@vbi/client/client/vbi-client';
import { exportJournal, readExport } from '@vbi/server/ledger/journal-export';
import { DailyActivity, dailyActivity } from '@vbi/server/reports/daily-report';
import { reconcile } from '@vbi/server/reports/reconciliation';
import { databaseSource, exportSource } from '@vbi/server/reports/report-source';
import { SignedReport, verifyReportSignature, writeDailyReport, writeMissingReports } from '@vbi/server/reports/report-file';
import { asInsider } from '../helpers/ledger';
import { ServerFixture, serverFixture } from '../helpers/server';

/**
 * Daily reports (docs/reports.md) from a day of real traffic through HTTP: the totals are what
 * the mailers did, to the mill; the same activity is reproduced from the journal export; the
 * reconciliation finds no difference on honest tables and lists each one an insider makes; the
 * signature holds and a changed report fails it.
 */
describe('daily reports: movements, transactions and reconciliation, signed and reproducible from the journal', function () {
  this.timeout(300_000);
  let f: ServerFixture;
  let dir: string;
  let dates: string[];
  const bought = [120_000, 80_000];
  const printed: number[] = [];
  let refunded = 0;

  before(async () => {
    f = await serverFixture();
    dir = mkdtempSync(join(process.env.VBI_TEST_ROOT as string, 'reports-'));
    for (let i = 0; i < 2; i++) {
      const c = await VbiClient.register({
        baseUrl: f.url, rootCertPem: f.rootPem, name: `Report ${i}`, licensingZip: '20260', returnAddress: ['Report', '1 Main St'],
        password: 'report day password', keyFilePath: join(dir, `key-${i}.json`),
      });
      await c.buy({ amount: bought[i], payment: { kind: 'card', token: 'tok_approve' } });
      await c.openSession({ heartbeats: false });
      const items = i === 0 ? [{ destinationZip: '10001', postage: 730 }, { destinationZip: '94105', postage: 1_250 }] : [{ destinationZip: '60601', postage: 2_000 }];
      await c.print(items);
      printed.push(...items.map((x) => x.postage));
      await c.closeSession();
      if (i === 1) refunded += (await c.refund({ kind: 'partial', amount: 15, reason: 'spoiled label' })).refunded;
      await c.close();
    }
    // the traffic's UTC days (one, unless it ran across midnight)
    const rows = await f.service.db.knex('journal').select('created_at');
    dates = [...new Set(rows.map((r: { created_at: Date }) => r.created_at.toISOString().slice(0, 10)))].sort();
  });
  after(async () => {
    await f?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const hsm = () => f.service.engines[0].hsm;
  async function activityOver(source: ReturnType<typeof databaseSource>): Promise<DailyActivity[]> {
    const out: DailyActivity[] = [];
    for (const d of dates) out.push(await dailyActivity(source, d));
    return out;
  }
  const total = (as: DailyActivity[], pick: (a: DailyActivity) => number) => as.reduce((s, a) => s + pick(a), 0);

  it('the day\'s movements and transactions are what the mailers did, to the mill', async () => {
    const days = await activityOver(databaseSource(f.service.db.knex));
    expect(total(days, (a) => a.movements.totals.downloaded)).to.equal(bought[0] + bought[1]);
    expect(total(days, (a) => a.movements.totals.refunded)).to.equal(refunded);
    expect(refunded).to.equal(15);
    expect(total(days, (a) => a.transactions.totals.indicia)).to.equal(printed.length);
    expect(total(days, (a) => a.transactions.totals.postage)).to.equal(printed.reduce((s, p) => s + p, 0));
    const rows = days.flatMap((a) => a.transactions.rows);
    expect(rows.map((t) => t.destinationZip).sort()).to.deep.equal(['10001', '60601', '94105']);
    for (const t of rows) expect(t.originZip).to.equal('20260');
    // the piece numbers of one meter rise
    const first = rows.filter((t) => t.meterId === rows[0].meterId).map((t) => t.piece);
    expect(first).to.deep.equal([...first].sort((a, b) => a - b));
    const types = days.flatMap((a) => a.movements.rows.map((m) => m.type));
    expect(types.filter((t) => t === 'pvd')).to.have.length(2);
    expect(types.filter((t) => t === 'license')).to.have.length(2); // each meter's licence (docs/licensing.md)
    expect(types).to.not.include('indicium');
  });

  it('the same activity is reproduced from the journal export', async () => {
    await exportJournal({ db: f.service.db.knex, hsm: hsm(), dir: join(dir, 'export') });
    const exp = await readExport(hsm(), join(dir, 'export'));
    expect(exp.findings).to.deep.equal([]);
    expect(await activityOver(exportSource(exp.entries))).to.deep.equal(await activityOver(databaseSource(f.service.db.knex)));
  });

  it('reconciles honest tables without a difference, and lists each one an insider makes', async () => {
    for (const d of dates) expect((await reconcile(f.service.db.knex, d)).differences).to.deep.equal([]);
    const date = dates[dates.length - 1];
    /** What reconcile finds with `change` made inside a transaction that is then rolled back. */
    const withChange = async (change: (trx: Knex.Transaction) => Promise<void>): Promise<string[]> => {
      let found: string[] = [];
      await asInsider(f.service.db.knex, async (trx) => {
        await change(trx);
        found = (await reconcile(trx, date)).differences;
        throw new Error('roll back');
      }).catch((e) => {
        if ((e as Error).message !== 'roll back') throw e;
      });
      return found;
    };
    const oneIndicium = await f.service.db.knex('indicia').orderBy('indicium_id', 'desc').first('indicium_id', 'meter_id');
    expect((await withChange((trx) => trx('indicia').where({ indicium_id: oneIndicium.indicium_id }).del())).join('\n')).to.match(/^print record .* 2000 mills, its 0 indicium row\(s\) 0$/m);
    // a purchase row added: the pool's movements no longer end at the master PSD's last record, nor at the row
    const forged = await withChange((trx) => trx('pool_purchases').insert({ amount: 5_000, reference: 'forged stock' }));
    expect(forged).to.have.length(2);
    expect(forged[0]).to.match(/^the master PSD's last record of the day holds (\d+) mills available, the pool's movements leave (\d+)$/);
    const [, held, left] = /holds (\d+) .* leave (\d+)$/.exec(forged[0])!;
    expect(Number(left) - Number(held)).to.equal(5_000);
    expect(forged[1]).to.equal('now: the pool row says 1000000000 mills bought, its purchases add up to 1000005000');
    // a refund's journal record deleted: the refunds paid no longer tie to the meters' registers
    expect((await withChange((trx) => trx('journal').where({ tx_type: 'refund' }).del())).join('\n')).to.match(/^bought − refunds paid = \d+, pool \+ meters' AR \+ DR = \d+$/m);
    // a PVD's journal record deleted: the meter's registers no longer tie to its records
    expect((await withChange((trx) => trx('journal').whereIn('meter_id', trx('journal').where({ tx_type: 'refund' }).select('meter_id')).andWhere({ tx_type: 'pvd' }).del())).join('\n'))
      .to.match(/AR \+ DR = \d+ at its last record of the day, downloaded − refunded = -?\d+/);
    expect((await withChange((trx) => trx('meters').where({ meter_id: oneIndicium.meter_id }).update({ descending_register: trx.raw('descending_register + 1000') }))).join('\n'))
      .to.match(new RegExp(`now: meter ${oneIndicium.meter_id} row holds`));
    expect((await withChange((trx) => trx('payments').where({ status: 'applied' }).limit(1).update({ applied_checkpoint_seq: 999_999 }))).join('\n'))
      .to.match(/applied no payment/);
  });

  it('writes signed report files; a changed report fails its signature; the schedule writes each past day once', async () => {
    const date = dates[0];
    const { path, doc } = await writeDailyReport({ db: f.service.db.knex, hsm: hsm(), date, dir: join(dir, 'out') });
    const read = JSON.parse(readFileSync(path, 'utf8')) as SignedReport;
    expect(read).to.deep.equal(doc);
    expect(verifyReportSignature(read)).to.equal(true);
    expect(read.report.reconciliation?.differences).to.deep.equal([]);
    const changed = JSON.parse(JSON.stringify(read)) as SignedReport;
    changed.report.activity.transactions.rows[0].postage += 1;
    expect(verifyReportSignature(changed)).to.equal(false);
    // the schedule, a day after the last traffic day: every past day with records gets its file, once
    const after = Date.parse(`${dates[dates.length - 1]}T00:00:00Z`) + 86_400_000 + 3_600_000;
    const schedDir = join(dir, 'scheduled');
    expect(await writeMissingReports({ db: f.service.db.knex, hsm: hsm(), dir: schedDir, now: () => after })).to.deep.equal([...dates].reverse());
    expect(await writeMissingReports({ db: f.service.db.knex, hsm: hsm(), dir: schedDir, now: () => after })).to.deep.equal([]);
    expect(readdirSync(schedDir).sort()).to.deep.equal(dates.map((d) => `daily-${d}.json`));
  });
});
