import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { VbiClient } from '../src/client/vbi-client';
import { reconcile } from '../src/reports/reconciliation';
import { ServerFixture, serverFixture } from './helpers/server';

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
});
