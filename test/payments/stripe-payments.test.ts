import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { VbiClient } from '@vbi/client/client/vbi-client';
import { VbiError } from '@vbi/core/errors';
import { chargeWithRetry } from '@vbi/server/payments/charge';
import { PaymentLinkError } from '@vbi/server/payments/payment-provider';
import { paymentProvider } from '@vbi/server/payments/provider-config';
import { paymentSettings } from '@vbi/server/config/payment-settings';
import { StripePaymentProvider } from '@vbi/server/payments/stripe-provider';
import { reconcile } from '@vbi/server/reports/reconciliation';
import { ServerFixture, serverFixture } from '../helpers/server';
import { StripeDouble } from '../helpers/stripe-double';

/**
 * The Stripe adapter (docs/payments.md) against a local stand-in that speaks the part of Stripe's
 * API it uses (test/helpers/stripe-double.ts), then through the real service: a mailer's purchase
 * authorised, downloaded and captured in cents; a decline that changes nothing; refunds paid back.
 */
describe('payments through Stripe', function () {
  this.timeout(120_000);
  let d: StripeDouble;
  let stripe: StripePaymentProvider;
  const card = (token: string) => ({ kind: 'card' as const, token });

  beforeEach(async () => {
    d = await new StripeDouble().start();
    stripe = new StripePaymentProvider({ secretKey: d.secretKey, apiBase: d.url, timeoutMs: 1000 });
  });
  afterEach(async () => d.close());

  describe('the adapter', () => {
    it('authorises in cents with manual capture, under an idempotency key; captures once; a second capture changes nothing', async () => {
      const a = await stripe.authorize({ paymentId: '41', amount: 12_340, method: card('pm_card_visa') });
      expect(a).to.deep.equal({ status: 'approved', providerRef: 'pi_1' });
      expect(d.intents.get('pi_1')).to.deep.include({ amount: 1234, currency: 'usd', capture_method: 'manual', status: 'requires_capture', metadata: { vbi_payment_id: '41' } });
      expect(d.requests[0]).to.deep.equal({ method: 'POST', path: '/v1/payment_intents', key: 'vbi-authorize-41' });
      expect(await stripe.poll('pi_1')).to.deep.equal({ status: 'approved' });
      await stripe.capture('pi_1', 12_340);
      await stripe.capture('pi_1', 12_340);
      expect(d.intents.get('pi_1')).to.deep.include({ status: 'succeeded', amount_received: 1234 });
      expect(d.requests.filter((r) => r.path.endsWith('/capture'))).to.have.length(1);
      let wrong: unknown;
      await stripe.capture('pi_1', 12_350).catch((e) => (wrong = e));
      expect((wrong as Error).message).to.contain('captured 1234 cents, not 1235');
    });

    it('a decline is an answer naming Stripe\'s reason, and so are an unknown method and an amount below Stripe\'s minimum; 3-D Secure is declined and its hold released; ach, check and part-cent amounts send nothing', async () => {
      expect(await stripe.authorize({ paymentId: '1', amount: 5_000, method: card('pm_card_chargeDeclinedInsufficientFunds') }))
        .to.deep.equal({ status: 'declined', providerRef: 'pi_1', reason: 'insufficient_funds' });
      expect(await stripe.authorize({ paymentId: '2', amount: 5_000, method: card('pm_card_chargeDeclined') }))
        .to.deep.equal({ status: 'declined', providerRef: 'pi_2', reason: 'generic_decline' });
      expect(await stripe.authorize({ paymentId: '3', amount: 5_000, method: card('pm_card_authenticationRequired') }))
        .to.deep.equal({ status: 'declined', providerRef: 'pi_3', reason: 'authentication_required' });
      expect(d.intents.get('pi_3')!.status).to.equal('canceled');
      // what Stripe refuses of the mailer's part is the mailer's answer, not a failure
      expect(await stripe.authorize({ paymentId: '8', amount: 5_000, method: card('pm_typed_by_hand') }))
        .to.deep.equal({ status: 'declined', providerRef: '', reason: 'invalid_payment_method' });
      expect(await stripe.authorize({ paymentId: '9', amount: 100, method: card('pm_card_visa') }))
        .to.deep.equal({ status: 'declined', providerRef: '', reason: 'amount_too_small' });
      const sent = d.requests.length;
      expect(await stripe.authorize({ paymentId: '4', amount: 5_000, method: { kind: 'ach', token: 'pm_usBankAccount_success' } }))
        .to.deep.equal({ status: 'declined', providerRef: '', reason: 'method_not_supported' });
      expect(await stripe.authorize({ paymentId: '5', amount: 5_000, method: { kind: 'check', token: 'x' } })).to.include({ status: 'declined', reason: 'method_not_supported' });
      expect(await stripe.authorize({ paymentId: '6', amount: 5_005, method: card('pm_card_visa') })).to.include({ status: 'declined', reason: 'amount_not_whole_cents' });
      let refused: VbiError | undefined;
      await chargeWithRetry(stripe, { paymentId: '7', amount: 5_005, method: card('pm_card_visa') }).catch((e) => (refused = e));
      expect(refused?.code).to.equal('INVALID_AMOUNT');
      expect(d.requests.length).to.equal(sent);
    });

    it('an answer lost after Stripe charged, and 5xx, are link failures; the retry with the same key gets the same PaymentIntent, one charge', async () => {
      d.fault({ kind: 'lose' }, { kind: 'status', status: 500 });
      const waits: number[] = [];
      const r = await chargeWithRetry(stripe, { paymentId: '9', amount: 10_000, method: card('pm_card_visa') }, { attempts: 3, backoffMs: 1, sleep: async (ms) => void waits.push(ms) });
      expect(r).to.deep.equal({ status: 'approved', providerRef: 'pi_1', attempts: 3 });
      expect(d.intents.size).to.equal(1);
      expect(d.requests.map((x) => x.key)).to.deep.equal(['vbi-authorize-9', 'vbi-authorize-9', 'vbi-authorize-9']);
    });

    it('no answer in time is a link failure; a wrong key is a configuration error, not retried, and the key is not in the message', async () => {
      d.fault({ kind: 'hang' });
      let hung: unknown;
      await stripe.authorize({ paymentId: '1', amount: 1_000, method: card('pm_card_visa') }).catch((e) => (hung = e));
      expect(hung).to.be.instanceOf(PaymentLinkError);
      expect((hung as Error).message).to.contain('no answer in 1000 ms');
      const wrong = new StripePaymentProvider({ secretKey: 'sk_test_notthekey00000', apiBase: d.url });
      let bad: unknown;
      await chargeWithRetry(wrong, { paymentId: '2', amount: 1_000, method: card('pm_card_visa') }, { sleep: async () => undefined }).catch((e) => (bad = e));
      expect(bad).to.not.be.instanceOf(PaymentLinkError);
      expect((bad as Error).message).to.contain('HTTP 401').and.contain('check the configured secret key').and.not.contain('sk_test_notthekey');
      expect(d.requests.filter((r) => r.key === 'vbi-authorize-2')).to.have.length(1);
      let refused: unknown;
      await new StripePaymentProvider({ secretKey: d.secretKey, apiBase: 'http://127.0.0.1:1' }).poll('pi_1').catch((e) => (refused = e));
      expect(refused).to.be.instanceOf(PaymentLinkError);
    });

    it('void cancels a hold once; after a capture it pays everything back instead; a refund is made once per key, even after Stripe forgot the key', async () => {
      await stripe.authorize({ paymentId: '1', amount: 2_000, method: card('pm_card_visa') });
      await stripe.void('pi_1');
      await stripe.void('pi_1');
      expect(d.intents.get('pi_1')!.status).to.equal('canceled');
      expect(d.requests.filter((r) => r.path.endsWith('/cancel'))).to.have.length(1);
      await stripe.void(''); // declined before Stripe made an intent: nothing to do

      await stripe.authorize({ paymentId: '2', amount: 3_000, method: card('pm_card_visa') });
      await stripe.capture('pi_2', 3_000);
      await stripe.void('pi_2');
      await stripe.void('pi_2');
      expect(d.refunds.filter((r) => r.payment_intent === 'pi_2').map((r) => r.amount)).to.deep.equal([300]);

      await stripe.authorize({ paymentId: '3', amount: 10_000, method: card('pm_card_visa') });
      await stripe.capture('pi_3', 10_000);
      const first = await stripe.refund({ refundKey: 'refund-7-payment-3', providerRef: 'pi_3', amount: 2_500 });
      d.forgetKeys(); // days later, the payout pass asks again
      expect(await stripe.refund({ refundKey: 'refund-7-payment-3', providerRef: 'pi_3', amount: 2_500 })).to.deep.equal(first);
      expect(d.refunds.filter((r) => r.payment_intent === 'pi_3').map((r) => r.amount)).to.deep.equal([250]);
      let other: unknown;
      await stripe.refund({ refundKey: 'refund-7-payment-3', providerRef: 'pi_3', amount: 2_000 }).catch((e) => (other = e));
      expect((other as Error).message).to.contain('was made for 250 cents, not 200');
      let tooMuch: unknown;
      await stripe.refund({ refundKey: 'refund-8-payment-3', providerRef: 'pi_3', amount: 9_000 }).catch((e) => (tooMuch = e));
      expect((tooMuch as Error).message).to.contain('HTTP 400 amount_too_large');
    });
  });

  describe('configuration', () => {
    it('stripe needs a readable key file holding a secret key, and https (http only on this machine)', () => {
      const dir = mkdtempSync(join(process.env.VBI_TEST_ROOT as string, 'stripe-config-'));
      try {
        const keyFile = join(dir, 'key');
        writeFileSync(keyFile, 'sk_live_abcdefgh12345678\n');
        const fails = (env: Record<string, string>) => {
          try {
            paymentProvider(paymentSettings({ CA_URL: 'https://ca.invalid', ...env }));
          } catch (e) {
            return `${(e as VbiError).code}: ${(e as Error).message}`;
          }
          return 'started';
        };
        expect(fails({ VBI_PAYMENT_PROVIDER: 'stripe' })).to.equal('CONFIG_INVALID: VBI_PAYMENT_PROVIDER=stripe needs VBI_STRIPE_SECRET_KEY_FILE (a file holding the secret key)');
        expect(fails({ VBI_PAYMENT_PROVIDER: 'stripe', VBI_STRIPE_SECRET_KEY_FILE: join(dir, 'none') })).to.equal('CONFIG_INVALID: VBI_STRIPE_SECRET_KEY_FILE cannot be read: ENOENT');
        writeFileSync(join(dir, 'pk'), 'pk_live_abcdefgh12345678');
        expect(fails({ VBI_PAYMENT_PROVIDER: 'stripe', VBI_STRIPE_SECRET_KEY_FILE: join(dir, 'pk') })).to.contain('does not hold a Stripe secret key').and.not.contain('pk_live');
        expect(fails({ VBI_PAYMENT_PROVIDER: 'stripe', VBI_STRIPE_SECRET_KEY_FILE: keyFile, VBI_STRIPE_API_BASE: 'http://stripe.example' })).to.contain('must be https');
        expect(fails({ VBI_PAYMENT_PROVIDER: 'stripe', VBI_STRIPE_SECRET_KEY_FILE: keyFile, VBI_STRIPE_TIMEOUT_MS: '10' })).to.contain('VBI_STRIPE_TIMEOUT_MS');
        expect(fails({ VBI_PAYMENT_PROVIDER: 'stripe', VBI_STRIPE_SECRET_KEY_FILE: keyFile })).to.equal('started');
        // the publishable key for the web app's buy page: of the form, and of the secret key's mode
        expect(fails({ VBI_PAYMENT_PROVIDER: 'stripe', VBI_STRIPE_SECRET_KEY_FILE: keyFile, VBI_STRIPE_PUBLISHABLE_KEY: 'sk_live_abcdefgh12345678' })).to.contain('is not a Stripe publishable key');
        expect(fails({ VBI_PAYMENT_PROVIDER: 'stripe', VBI_STRIPE_SECRET_KEY_FILE: keyFile, VBI_STRIPE_PUBLISHABLE_KEY: 'pk_test_abcdefgh12345678' })).to.contain('of different modes');
        expect(paymentProvider(paymentSettings({ VBI_PAYMENT_PROVIDER: 'stripe', VBI_STRIPE_SECRET_KEY_FILE: keyFile, VBI_STRIPE_PUBLISHABLE_KEY: 'pk_live_abcdefgh12345678' })).checkout)
          .to.deep.equal({ methods: ['card'], stripePublishableKey: 'pk_live_abcdefgh12345678' });
        expect(paymentProvider(paymentSettings({ VBI_PAYMENT_PROVIDER: 'stripe', VBI_STRIPE_SECRET_KEY_FILE: keyFile })).checkout).to.deep.equal({ methods: ['card'] });
        expect(paymentProvider(paymentSettings({ VBI_PAYMENT_PROVIDER: 'stripe', VBI_STRIPE_SECRET_KEY_FILE: keyFile, VBI_STRIPE_API_BASE: 'http://127.0.0.1:9' })).name).to.equal('stripe');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('through the service', () => {
    let f: ServerFixture<StripePaymentProvider>;
    let dir: string;
    let c: VbiClient;
    const today = () => new Date().toISOString().slice(0, 10);

    beforeEach(async () => {
      f = await serverFixture({ payments: stripe });
      dir = mkdtempSync(join(process.env.VBI_TEST_ROOT as string, 'stripe-'));
      c = await VbiClient.register({
        baseUrl: f.url, rootCertPem: f.rootPem, name: 'Stripe Mailer', licensingZip: '20260', returnAddress: ['Stripe Mailer', '1 Main St'],
        password: 'stripe mailer password', keyFilePath: join(dir, 'key.json'),
      });
    });
    afterEach(async () => {
      await c?.close();
      await f?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('a payment id issued again (the database restored to before a payment) is a new payment at Stripe, charged and captured, not the old answer', async () => {
      const first = await c.buy({ amount: 10_000, payment: card('pm_card_visa') });
      const key = (await f.service.db.knex('payments').where({ payment_id: first.paymentId }).first('processor_key')).processor_key;
      expect(d.intents.get('pi_1')!.metadata.vbi_payment_id).to.equal(`${first.paymentId}.${key}`).and.match(/^\d+\.[0-9a-f]{16}$/);
      // what a point-in-time restore leaves: the payment row gone, its id free to be issued again
      const knex = f.service.db.knex;
      await knex('payments').where({ payment_id: first.paymentId }).delete();
      await knex.raw(`SELECT setval(pg_get_serial_sequence('payments', 'payment_id'), ?, false)`, [first.paymentId]);
      const again = await c.buy({ amount: 10_000, payment: card('pm_card_visa') });
      expect(again.paymentId).to.equal(first.paymentId);
      expect([...d.intents.values()].map((pi) => [pi.status, pi.amount_received])).to.deep.equal([['succeeded', 1_000], ['succeeded', 1_000]]);
      expect((await knex('payments').where({ payment_id: again.paymentId }).first('provider_ref')).provider_ref).to.equal('pi_2');
    });

    it('a purchase is authorised, downloaded, then captured in cents; a decline and a part-cent amount change nothing; refunds are paid back in cents', async () => {
      const bought = await c.buy({ amount: 20_000, payment: card('pm_card_visa') });
      const row = await f.service.db.knex('payments').where({ payment_id: bought.paymentId }).first('status', 'provider', 'provider_ref', 'captured_at');
      expect(row).to.deep.include({ status: 'applied', provider: 'stripe', provider_ref: 'pi_1' });
      expect(row.captured_at).to.be.instanceOf(Date);
      expect(d.intents.get('pi_1')).to.deep.include({ status: 'succeeded', amount_received: 2_000 });
      expect(d.intents.get('pi_1')!.metadata.vbi_payment_id).to.match(new RegExp(`^${bought.paymentId}\\.[0-9a-f]{16}$`));
      expect((await c.balance()).descending).to.equal(20_000);

      let declined: VbiError | undefined;
      await c.buy({ amount: 5_000, payment: card('pm_card_chargeDeclinedInsufficientFunds') }).catch((e) => (declined = e));
      expect(declined?.code).to.equal('PAYMENT_DECLINED');
      expect(declined?.details).to.deep.include({ reason: 'insufficient_funds' });
      let partCent: VbiError | undefined;
      const sent = d.requests.length;
      await c.buy({ amount: 5_005, payment: card('pm_card_visa') }).catch((e) => (partCent = e));
      expect(partCent?.code).to.equal('INVALID_AMOUNT');
      expect(d.requests.length).to.equal(sent);
      expect((await c.balance()).descending).to.equal(20_000);

      // a spoilage refund of 15 mills pays back 1 cent at once; the half cent left is for the operator
      await c.openSession({ heartbeats: false });
      await c.print([{ destinationZip: '10001', postage: 1_573 }]);
      await c.closeSession();
      const payout = () => f.service.db.knex('refunds').where({ meter_id: c.meterId }).orderBy('refund_id').pluck('payout_status');
      const partial = await c.refund({ kind: 'partial', amount: 15, reason: 'spoiled label' });
      expect(partial.refunded).to.equal(15);
      expect(d.refunds.map((r) => r.amount)).to.deep.equal([1]);
      expect(await payout()).to.deep.equal(['unpaid']);
      const full = await c.refund({ kind: 'full', reason: 'leaving the service' });
      expect(full.refunded).to.equal(20_000 - 1_573 - 15);
      // 18,412 mills: 1,841 cents paid back, 2 mills for the operator
      expect(d.refunds.map((r) => r.amount)).to.deep.equal([1, 1_841]);
      expect(await payout()).to.deep.equal(['unpaid', 'unpaid']);
      expect(await f.server.payRefunds()).to.deep.equal({ paid: 0, unpaid: 0, failed: 0 });
      expect(d.refunds).to.have.length(2);
      const differences = (await reconcile(f.service.db.knex, today())).differences;
      expect(differences.filter((x) => x.includes('to pay by hand'))).to.have.length(2);
      expect(differences.every((x) => x.includes('to pay by hand'))).to.equal(true);
    });
  });
});
