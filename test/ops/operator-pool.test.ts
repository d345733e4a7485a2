import { MASTER_PSD_ID } from '@vbi/server/module/commands/master-psd';
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { VbiClient } from '@vbi/client/client/vbi-client';
import { addCredential } from '@vbi/server/api/credentials';
import { auditRecords } from '@vbi/server/ledger/audit-store';
import { reconcile } from '@vbi/server/reports/reconciliation';
import { ServerFixture, serverFixture } from '../helpers/server';

/**
 * Stock bought from the post entered by an operator (POST /v1/operator/pool/purchases) against
 * the real service: only with an operator credential, bad input refused with its code and nothing
 * changed, once per post's reference however often (or concurrently) it is sent, audited; and the
 * operator's command-line tool over the same routes.
 */
describe("operators enter stock bought from the post; the operator's command-line tool", function () {
  this.timeout(120_000);
  let f: ServerFixture;
  let token: string;

  before(async () => {
    f = await serverFixture();
    token = (await addCredential(f.service.db.knex, 'operator', 'Olga Operator')).token;
  });
  after(async () => {
    await f?.close();
  });

  const pool = () => f.service.ledger.pool();
  const post = (body: unknown, auth: string | null = token) => fetch(`${f.url}/v1/operator/pool/purchases`, {
    method: 'POST', headers: { 'content-type': 'application/json', ...(auth ? { authorization: `Bearer ${auth}` } : {}) }, body: JSON.stringify(body),
  });
  const codeOf = async (r: Response) => ((await r.json()) as { error?: { code: string } }).error?.code;

  it('refuses without a credential and refuses bad input, changing nothing', async () => {
    const before = await pool();
    const anon = await post({ amount: 5_000, reference: 'POST-1' }, null);
    expect([anon.status, await codeOf(anon)]).to.deep.equal([401, 'OPERATOR_UNKNOWN']);
    const forged = await post({ amount: 5_000, reference: 'POST-1' }, 'not-a-credential');
    expect([forged.status, await codeOf(forged)]).to.deep.equal([401, 'OPERATOR_UNKNOWN']);
    for (const body of [{ amount: 0, reference: 'R' }, { amount: 12.5, reference: 'R' }, { amount: '5000', reference: 'R' }, { amount: -1, reference: 'R' },
      { amount: 5_000 }, { amount: 5_000, reference: '' }, { amount: 5_000, reference: 'x'.repeat(129) }, { amount: 5_000, reference: 'R', extra: 1 }]) {
      const r = await post(body);
      expect([r.status, await codeOf(r)], JSON.stringify(body)).to.deep.equal([400, 'VALIDATION_FAILED']);
    }
    expect(await pool()).to.deep.equal(before);
    expect(await f.service.db.knex('pool_purchases').where({ reference: 'POST-1' })).to.deep.equal([]);
  });

  it('enters a purchase once per reference — retried, or sent five times at once — and audits it', async () => {
    const before = await pool();
    const first = await post({ amount: 2_500_000, reference: 'USPS-PO-2026-0001' });
    expect(first.status).to.equal(200);
    const body = await first.json() as { purchaseId: number; created: boolean; pool: { purchased: number; available: number } };
    expect(body.created).to.equal(true);
    expect(body.pool).to.deep.include({ purchased: before.purchased + 2_500_000, available: before.available + 2_500_000 });
    const again = await (await post({ amount: 2_500_000, reference: 'USPS-PO-2026-0001' })).json() as { purchaseId: number; created: boolean };
    expect(again).to.deep.include({ purchaseId: body.purchaseId, created: false });
    const conflict = await post({ amount: 2_500_001, reference: 'USPS-PO-2026-0001' });
    expect([conflict.status, await codeOf(conflict)]).to.deep.equal([409, 'POOL_PURCHASE_CONFLICT']);
    const burst = await Promise.all(Array.from({ length: 5 }, () => post({ amount: 700_000, reference: 'USPS-PO-2026-0002' }).then((r) => r.json() as Promise<{ created: boolean; purchaseId: number }>)));
    expect(burst.filter((b) => b.created)).to.have.length(1);
    expect(new Set(burst.map((b) => b.purchaseId)).size).to.equal(1);
    expect(await pool()).to.deep.include({ purchased: before.purchased + 3_200_000, available: before.available + 3_200_000 });
    // every purchase is a record of the master PSD (the fixture's own stock first), each once however often it was sent
    const records = await f.service.db.knex('journal').where({ meter_id: MASTER_PSD_ID, tx_type: 'pool-purchase' }).orderBy('checkpoint_seq').pluck('amount');
    expect(records.map(Number).slice(1)).to.deep.equal([2_500_000, 700_000]);
    const rows = await f.service.db.knex('pool_purchases').whereIn('reference', ['USPS-PO-2026-0001', 'USPS-PO-2026-0002']).select('entered_by');
    for (const r of rows) expect(r.entered_by).to.match(/^Olga Operator \(/);
    const today = new Date().toISOString().slice(0, 10);
    expect((await reconcile(f.service.db.knex, today)).differences).to.deep.equal([]);
  });

  /** The operator tool as an operator runs it. */
  function operatorTool(args: string[], env: Record<string, string> = { VBI_OPERATOR_TOKEN: token }): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => execFile(process.execPath, [require.resolve('@vbi/server/bin/operator'), ...args],
      { env: { PATH: process.env.PATH ?? '', VBI_SERVER: f.url, ...env } },
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr })));
  }

  it("the operator's tool: pool, buy-stock, a meter action, and the API's codes on refusal", async () => {
    const before = await pool();
    const bought = await operatorTool(['buy-stock', '--amount', '12.5', '--reference', 'USPS-PO-2026-0003']);
    expect(bought.code, bought.stderr).to.equal(0);
    expect(bought.stdout).to.match(/^entered: purchase \d+, \$12\.50, reference USPS-PO-2026-0003$/m);
    expect((await pool()).purchased).to.equal(before.purchased + 12_500);
    expect((await operatorTool(['buy-stock', '--amount', '12.5', '--reference', 'USPS-PO-2026-0003'])).stdout).to.match(/^already entered: /);
    const shown = await operatorTool(['pool']);
    expect(shown.stdout).to.contain(`available $${Math.floor((before.available + 12_500) / 1000).toLocaleString('en-US')}.`);
    const noToken = await operatorTool(['pool'], {});
    expect([noToken.code, noToken.stderr.trim()]).to.deep.equal([1, 'OPERATOR_UNKNOWN: set VBI_OPERATOR_TOKEN to an operator credential (npm run credentials -- add operator --name NAME)']);
    const bad = await operatorTool(['buy-stock', '--amount', '1.2345', '--reference', 'X']);
    expect(bad.code).to.equal(1);
    expect(bad.stderr).to.match(/^INVALID_AMOUNT: /);
    const unknown = await operatorTool(['suspend', 'NO-SUCH-METER', '--reason', 'reported stolen']);
    expect(unknown.code).to.equal(1);
    expect(unknown.stderr).to.match(/^UNKNOWN_METER: /);
    const meter = await f.service.db.knex('meters').where({ state: 'unassigned' }).first('meter_id');
    const withdrawn = await operatorTool(['withdraw', meter.meter_id, '--reason', 'pool meter retired']);
    expect(withdrawn.code, withdrawn.stderr).to.equal(0);
    expect(JSON.parse(withdrawn.stdout).state).to.equal('closed');
    expect((await operatorTool(['frobnicate'])).code).to.equal(2);
  });
  it('a meter reported lost or stolen: suspended at once, then closed for good with its postage refunded to the mailer through the processor', async () => {
    const dir = mkdtempSync(join(process.env.VBI_TEST_ROOT as string, 'lost-'));
    const c = await VbiClient.register({
      baseUrl: f.url, rootCertPem: f.rootPem, name: 'Lost Meter', licensingZip: '20260', returnAddress: ['Lost', '1 Main St'],
      password: 'lost meter password', keyFilePath: join(dir, 'key.json'),
    });
    try {
      const bought = await c.buy({ amount: 9_000, payment: { kind: 'card', token: 'tok_approve' } });
      const suspended = await operatorTool(['suspend', c.meterId, '--reason', 'reported stolen by the mailer']);
      expect(suspended.code, suspended.stderr).to.equal(0);
      const charged = f.payments.payments().length;
      expect(await c.buy({ amount: 1_000, payment: { kind: 'card', token: 'tok_approve' } }).then(() => 'bought', (e) => (e as { code: string }).code)).to.equal('METER_NOT_ACTIVE');
      expect(f.payments.payments().length).to.equal(charged); // refused before anyone was charged
      const closed = await operatorTool(['refund-and-close', c.meterId, '--reason', 'stolen, reviewed: refund the mailer']);
      expect(closed.code, closed.stderr).to.equal(0);
      expect(JSON.parse(closed.stdout)).to.deep.include({ state: 'closed' });
      expect(JSON.parse(closed.stdout).registers).to.deep.include({ refunded: 9_000, descendingRegister: 0, payout: 'paid' });
      const ref = (await f.service.db.knex('payments').where({ payment_id: bought.paymentId }).first('provider_ref')).provider_ref;
      expect(f.payments.payments().find((p) => p.providerRef === ref)!.refunded).to.equal(9_000);
      const audit = (await auditRecords(f.service.db.knex)).filter((r) => r.kind === 'meter-refunded-closed');
      expect(audit.map((r) => [r.details.meterId, r.details.refunded])).to.deep.equal([[c.meterId, 9_000]]);
      // closed for good: nothing more is refunded, downloaded or reactivated
      const again = await operatorTool(['refund-and-close', c.meterId, '--reason', 'twice']);
      expect([again.code, again.stderr.split(':')[0]]).to.deep.equal([1, 'METER_CLOSED']);
      expect((await operatorTool(['reactivate', c.meterId, '--reason', 'found it'])).code).to.equal(1);
      expect(await c.buy({ amount: 1_000, payment: { kind: 'card', token: 'tok_approve' } }).then(() => 'bought', (e) => (e as { code: string }).code)).to.equal('METER_CLOSED');
      expect((await reconcile(f.service.db.knex, new Date().toISOString().slice(0, 10))).differences).to.deep.equal([]);
    } finally {
      await c.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
