import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { VbiClient } from '@vbi/client/client/vbi-client';
import { reconcile } from '@vbi/server/reports/reconciliation';
import { ServerFixture, serverFixture } from '../helpers/server';

/**
 * Authorise, download, then capture, against the real service and the sandbox processor: a
 * card's authorization is captured once its download is in the meter; a check is captured when it
 * clears and its value is downloaded; a capture whose link fails leaves the download in the meter,
 * shows in the reconciliation, and is captured by the next capture pass — once.
 */
describe('payments are captured only after their download', function () {
  this.timeout(120_000);
  let f: ServerFixture;
  let dir: string;
  let c: VbiClient;

  before(async () => {
    f = await serverFixture();
    dir = mkdtempSync(join(process.env.VBI_TEST_ROOT as string, 'capture-'));
    c = await VbiClient.register({
      baseUrl: f.url, rootCertPem: f.rootPem, name: 'Capture', licensingZip: '20260', returnAddress: ['Capture', '1 Main St'],
      password: 'capture password', keyFilePath: join(dir, 'key.json'),
    });
  });
  after(async () => {
    await c?.close();
    await f?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const sandbox = (providerRef: string) => f.payments.payments().find((p) => p.providerRef === providerRef)!;
  const row = (paymentId: number) => f.service.db.knex('payments').where({ payment_id: paymentId }).first('status', 'provider_ref', 'captured_at');
  const today = () => new Date().toISOString().slice(0, 10);

  it('a card is captured after its download; a check when it clears and is downloaded', async () => {
    const card = await c.buy({ amount: 10_000, payment: { kind: 'card', token: 'tok_approve' } });
    const r1 = await row(card.paymentId);
    expect(r1.status).to.equal('applied');
    expect(r1.captured_at).to.be.instanceOf(Date);
    expect(sandbox(r1.provider_ref)).to.deep.include({ captured: true, captureCalls: 1 });

    const check = await c.buy({ amount: 4_000, payment: { kind: 'check', token: 'tok_approve' } });
    const r2 = await row(check.paymentId);
    expect(r2.status).to.equal('pending');
    expect(r2.captured_at).to.equal(null);
    expect(sandbox(r2.provider_ref).captured).to.not.equal(true);
    await c.settle(check.paymentId);
    const r3 = await row(check.paymentId);
    expect(r3.status).to.equal('applied');
    expect(r3.captured_at).to.be.instanceOf(Date);
    expect(sandbox(r3.provider_ref).captured).to.equal(true);
    expect((await reconcile(f.service.db.knex, today())).differences).to.deep.equal([]);
  });

  it('a capture whose link fails leaves the download in the meter and is captured by the next pass, once', async () => {
    const before = await c.balance();
    const bought = await c.buy({ amount: 7_000, payment: { kind: 'card', token: 'tok_capture_linkfail' } });
    expect((await c.balance()).descending).to.equal(before.descending + 7_000);
    const r1 = await row(bought.paymentId);
    expect(r1.status).to.equal('applied');
    expect(r1.captured_at).to.equal(null);
    expect(sandbox(r1.provider_ref)).to.deep.include({ captureCalls: 1 });
    expect(sandbox(r1.provider_ref).captured).to.not.equal(true);
    expect((await reconcile(f.service.db.knex, today())).differences).to.deep.equal([
      `payment ${bought.paymentId} (meter ${c.meterId}, 7000 mills) is applied but not captured at the processor yet`,
    ]);
    expect(await f.server.capturePayments()).to.deep.equal({ captured: 1, failed: 0 });
    expect((await row(bought.paymentId)).captured_at).to.be.instanceOf(Date);
    expect(sandbox(r1.provider_ref)).to.deep.include({ captured: true, captureCalls: 2 });
    expect(await f.server.capturePayments()).to.deep.equal({ captured: 0, failed: 0 });
    expect(sandbox(r1.provider_ref).captureCalls).to.equal(2);
    expect((await reconcile(f.service.db.knex, today())).differences).to.deep.equal([]);
  });
  it('refunds are paid back against the captured payments, newest first, once; what they cannot cover is left to pay by hand and reported', async () => {
    await c.openSession({ heartbeats: false });
    await c.print([{ destinationZip: '10001', postage: 5_000 }]);
    await c.closeSession();
    const refundedBefore = () => f.payments.payments().reduce((s, p) => s + p.refunded, 0);
    const start = refundedBefore();
    // a payout whose link fails stays due, and the next pass pays it with the same keys
    const realRefund = f.payments.refund.bind(f.payments);
    let failures = 1;
    f.payments.refund = async (req) => {
      if (failures-- > 0) throw new Error('link to the processor failed');
      return realRefund(req);
    };
    try {
      const partial = await c.refund({ kind: 'partial', amount: 30, reason: 'spoiled label' });
      expect(partial.refunded).to.equal(30);
      const due = await f.service.db.knex('refunds').where({ meter_id: c.meterId }).orderBy('refund_id', 'desc').first('refund_id', 'payout_status');
      expect(due.payout_status).to.equal('due');
      expect(refundedBefore()).to.equal(start);
      expect(await f.server.payRefunds()).to.deep.equal({ paid: 1, unpaid: 0, failed: 0 });
      expect(await f.server.payRefunds()).to.deep.equal({ paid: 0, unpaid: 0, failed: 0 });
    } finally {
      f.payments.refund = realRefund;
    }
    expect(refundedBefore()).to.equal(start + 30);
    // the newest captured payment paid it
    const payments = await f.service.db.knex('payments').where({ meter_id: c.meterId, status: 'applied' }).orderBy('payment_id', 'desc').select('provider_ref', 'amount');
    expect(sandbox(payments[0].provider_ref).refunded).to.equal(30);

    // a full refund: the meter's DR, from the captured payments newest first
    const before = await c.balance();
    const full = await c.refund({ kind: 'full', reason: 'leaving the service' });
    expect(full.refunded).to.equal(before.descending);
    const taken = payments.map((p) => sandbox(p.provider_ref).refunded);
    expect(taken.reduce((a, b) => a + b, 0)).to.equal(30 + before.descending);
    let left = 30 + before.descending;
    expect(taken).to.deep.equal(payments.map((p) => {
      const t = Math.min(left, Number(p.amount));
      left -= t;
      return t;
    }));
    expect((await f.service.db.knex('refunds').where({ meter_id: c.meterId }).select('payout_status')).map((r) => r.payout_status)).to.deep.equal(['paid', 'paid']);

    // postage the vendor downloaded without a payment cannot be paid back through the processor
    const other = await VbiClient.register({
      baseUrl: f.url, rootCertPem: f.rootPem, name: 'Vendor credit', licensingZip: '20260', returnAddress: ['Vendor', '2 Main St'],
      password: 'vendor credit password', keyFilePath: join(dir, 'key-2.json'),
    });
    try {
      await other.buy({ amount: 1_000, payment: { kind: 'card', token: 'tok_approve' } });
      await f.service.ledger.postageValueDownload({ meterId: other.meterId, amount: 3_000 });
      const r = await other.refund({ kind: 'full', reason: 'closing' });
      expect(r.refunded).to.equal(4_000);
      const row = await f.service.db.knex('refunds').where({ meter_id: other.meterId }).first('refund_id', 'payout_status');
      expect(row.payout_status).to.equal('unpaid');
      expect((await reconcile(f.service.db.knex, today())).differences).to.include.members([
        `refund ${row.refund_id} (meter ${other.meterId}, 4000 mills): 1000 paid back through the processor, 3000 to pay by hand`,
      ]);
    } finally {
      await other.close();
    }
  });
});
