import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { VbiClient } from '@vbi/client/client/vbi-client';
import { formatMills } from '@vbi/client/client/money';
import { StripePaymentProvider } from '@vbi/server/payments/stripe-provider';
import { launchChromium, screenshot } from '../helpers/browser';
import { ServerFixture, serverFixture } from '../helpers/server';
import { StripeDouble } from '../helpers/stripe-double';

const PASSWORD = 'stripe web password';
const PUBLISHABLE_KEY = 'pk_test_vbiwebcheckout0000';

/**
 * Stripe.js as the test's stand-in serves it at https://js.stripe.com/v3/ (the browser's request
 * is answered by the test: no network here). Like Stripe.js it mounts a card field into the page's
 * element and turns what was typed into a PaymentMethod id — here the id itself is typed (Stripe's
 * test PaymentMethods), and anything else is refused as Stripe refuses an incomplete number.
 */
const STRIPE_JS_STAND_IN = `
window.Stripe = function (publishableKey) {
  window.__stripeKeys = (window.__stripeKeys || []).concat([publishableKey]);
  return {
    elements: function () {
      return { create: function (type) {
        var input = document.createElement('input');
        input.name = 'stand-in-card';
        input.setAttribute('aria-label', 'Card (Stripe.js stand-in)');
        return { type: type, input: input, mount: function (el) { el.append(input); } };
      } };
    },
    createPaymentMethod: function (req) {
      var v = req.card.input.value.trim();
      if (v.indexOf('pm_') !== 0) return Promise.resolve({ error: { message: 'Your card number is incomplete.', code: 'incomplete_number' } });
      return Promise.resolve({ paymentMethod: { id: v } });
    }
  };
};`;

/**
 * The web app's buy page with Stripe as the processor: the service tells the page its publishable
 * key (GET /v1/payment-methods), the CSP lets Stripe.js in, the card goes through Stripe's field
 * and only a PaymentMethod id reaches the service, which authorises, downloads and captures it at
 * the Stripe stand-in (test/helpers/stripe-double.ts). Real service, SoftHSM2, PostgreSQL, Chromium.
 */
describe('web app: buying postage with a card through Stripe.js', function () {
  this.timeout(300_000);
  let d: StripeDouble;
  let fx: ServerFixture<StripePaymentProvider>;
  let browser: Awaited<ReturnType<typeof launchChromium>>;
  let page: Page;
  let dir: string;
  const problems: string[] = [];
  const stripeJsRequests: string[] = [];

  before(async () => {
    d = await new StripeDouble().start();
    fx = await serverFixture({ payments: new StripePaymentProvider({ secretKey: d.secretKey, apiBase: d.url, timeoutMs: 2_000, publishableKey: PUBLISHABLE_KEY }) });
    dir = mkdtempSync(join(process.env.VBI_TEST_ROOT as string, 'stripe-web-'));
    const c = await VbiClient.register({
      baseUrl: fx.url, rootCertPem: fx.rootPem, name: 'Stripe Web Mailer', licensingZip: '20260', returnAddress: ['Stripe Web Mailer', '1 Main St'],
      password: PASSWORD, keyFilePath: join(dir, 'key.json'),
    });
    await c.close();
    browser = await launchChromium();
    page = await browser.context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error' && !/Failed to load resource|net::ERR_/.test(m.text())) problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(e.message));
    await page.route('https://js.stripe.com/**', (route) => {
      stripeJsRequests.push(route.request().url());
      return route.fulfill({ status: 200, contentType: 'application/javascript', body: STRIPE_JS_STAND_IN });
    });
    await page.goto(fx.url);
    await page.setInputFiles('#import-form [name=keyFile]', join(dir, 'key.json'));
    await page.fill('#import-form [name=password]', PASSWORD);
    await page.click('#import-form button[type=submit]');
    await page.waitForFunction(() => location.hash === '#/balance');
  });
  after(async () => {
    await browser?.close();
    await fx?.close();
    await d?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the service names Stripe and its publishable key, and its CSP lets Stripe.js in (only then)', async () => {
    const methods = await (await fetch(`${fx.url}/v1/payment-methods`)).json();
    expect(methods).to.deep.equal({ provider: 'stripe', unitMills: 10, methods: ['card'], stripe: { publishableKey: PUBLISHABLE_KEY } });
    const csp = (await fetch(`${fx.url}/`)).headers.get('content-security-policy') ?? '';
    expect(csp).to.include("script-src 'self' https://js.stripe.com;").and.include("connect-src 'self' https://api.stripe.com;")
      .and.include('frame-src https://js.stripe.com https://hooks.stripe.com;').and.not.include('unsafe-inline');
  });

  it('a card through Stripe\'s field: only its PaymentMethod id reaches the service, which authorises, downloads and captures it; a decline and an incomplete card change nothing', async () => {
    await page.click('nav a[href="#/buy"]');
    await page.waitForSelector('#buy-form[data-provider="stripe"] #card-element input');
    expect(await page.$('#buy-form [name=token]')).to.equal(null);
    expect(await page.evaluate(() => (window as unknown as { __stripeKeys: string[] }).__stripeKeys)).to.deep.equal([PUBLISHABLE_KEY]);
    expect(stripeJsRequests).to.deep.equal(['https://js.stripe.com/v3/']);

    // an incomplete card: Stripe's message, and nothing sent to the service
    const paymentsBefore = Number((await fx.service.db.knex('payments').count({ n: '*' }).first())?.n);
    await page.fill('#buy-form [name=amount]', '20.00');
    await page.fill('#card-element input', '4242 4242');
    await page.click('#buy-form button[type=submit]');
    expect(await (await page.waitForSelector('#view .error code')).getAttribute('data-code')).to.equal('CARD_INCOMPLETE');
    expect(await page.textContent('#view .error')).to.include('Your card number is incomplete.');
    expect(Number((await fx.service.db.knex('payments').count({ n: '*' }).first())?.n)).to.equal(paymentsBefore);

    // a declined card: the processor's decline, no postage
    await page.fill('#card-element input', 'pm_card_chargeDeclinedInsufficientFunds');
    await page.click('#buy-form button[type=submit]');
    await page.waitForFunction(() => document.querySelector('#view .error code')?.getAttribute('data-code') === 'PAYMENT_DECLINED');
    expect([...d.intents.values()].map((pi) => pi.status)).to.deep.equal(['requires_payment_method']);

    // an approved card: authorised, downloaded, captured in cents
    await page.fill('#card-element input', 'pm_card_visa');
    await page.click('#buy-form button[type=submit]');
    const ok = await (await page.waitForSelector('#view .ok')).textContent();
    expect(ok).to.match(new RegExp(`^Bought ${formatMills(20_000).replace('$', '\\$')}: ${formatMills(20_000).replace('$', '\\$')} available`));
    await screenshot(page, 'stripe-buy');
    const row = await fx.service.db.knex('payments').where({ status: 'applied' }).first('provider', 'provider_ref', 'amount', 'captured_at');
    expect(row).to.deep.include({ provider: 'stripe', amount: 20_000 });
    expect(row.captured_at).to.be.instanceOf(Date);
    const intent = d.intents.get(row.provider_ref)!;
    expect(intent).to.deep.include({ status: 'succeeded', amount_received: 2_000, payment_method: 'pm_card_visa' });
    expect(problems).to.deep.equal([]);
  });
});

describe('web app: Stripe as the processor without a publishable key', function () {
  this.timeout(120_000);

  it('the buy page says cards cannot be taken here and shows no form; Stripe.js is not loaded and the CSP lets nothing of Stripe in', async () => {
    const d = await new StripeDouble().start();
    const fx = await serverFixture({ payments: new StripePaymentProvider({ secretKey: d.secretKey, apiBase: d.url, timeoutMs: 2_000 }) });
    const browser = await launchChromium();
    try {
      expect(await (await fetch(`${fx.url}/v1/payment-methods`)).json()).to.deep.equal({ provider: 'stripe', unitMills: 10, methods: ['card'] });
      expect((await fetch(`${fx.url}/`)).headers.get('content-security-policy')).not.to.include('stripe');
      const page = await browser.context.newPage();
      const stripeJs: string[] = [];
      await page.route('https://js.stripe.com/**', (route) => {
        stripeJs.push(route.request().url());
        return route.abort();
      });
      await page.goto(`${fx.url}/#/buy`);
      expect(await (await page.waitForSelector('#buy-unavailable')).textContent()).to.include('VBI_STRIPE_PUBLISHABLE_KEY');
      expect(await page.$('#buy-form')).to.equal(null);
      expect(stripeJs).to.deep.equal([]);
    } finally {
      await browser.close();
      await fx.close();
      await d.close();
    }
  });
});
