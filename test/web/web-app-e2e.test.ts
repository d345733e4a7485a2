import { Resvg } from '@resvg/resvg-js';
import { expect } from 'chai';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { addCredential } from '@vbi/server/api/credentials';
import { KeyFile } from '@vbi/client/client/key-file';
import { formatMills } from '@vbi/client/client/money';
import type { ClientState } from '@vbi/client/client/client-state';
import { readFirstDataMatrix } from '@vbi/core/indicium/decoder/dmtxread';
import { decodeIndicium } from '@vbi/core/indicium/layout';
import { computePostage } from '@vbi/core/rates/postage';
import { launchChromium, screenshot } from '../helpers/browser';
import { ServerFixture, serverFixture } from '../helpers/server';

const PASSWORD = 'web-app-password-1';
const CLI = require.resolve('@vbi/client/bin/vbi');

/**
 * The web app end to end: the real service (SoftHSM2 token, PostgreSQL) and Debian's headless
 * Chromium driving the pages as a mailer would. Labels are downloaded and decoded with dmtxread;
 * the key file goes to the vbi CLI and back. A screenshot of each page goes to var/screenshots.
 */
describe('web app in headless Chromium (end to end)', function () {
  this.timeout(600_000);
  let fx: ServerFixture;
  let browser: Awaited<ReturnType<typeof launchChromium>>;
  let page: Page;
  let dir: string;
  let skewMs = 0;
  let endSessionAfterFirstItem = false;

  before(async () => {
    // the service's clock can be moved ahead to let a session run out without waiting
    fx = await serverFixture({
      mailer: {
        heartbeatIntervalMs: 1000, sessionTimeoutMs: 30_000, clock: () => Date.now() + skewMs,
        // a batch whose session runs out after its first item (the link dropped meanwhile)
        afterItem: (index) => {
          if (endSessionAfterFirstItem && index === 0) {
            skewMs += 31_000;
            endSessionAfterFirstItem = false;
          }
        },
      },
    });
    browser = await launchChromium();
    page = await browser.context.newPage();
    watch(page);
    dir = mkdtempSync(join(tmpdir(), 'vbi-web-e2e-'));
    await page.goto(fx.url);
  });
  after(async () => {
    await browser?.close();
    await fx?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Console errors (a CSP violation is one) and uncaught exceptions of every page. */
  const problems: string[] = [];
  function watch(p: Page): void {
    p.on('console', (m) => {
      // failed requests (refused inputs, the aborted heartbeats) are logged by the browser too; they are the API's answers
      if (m.type() === 'error' && !/Failed to load resource|net::ERR_/.test(m.text())) problems.push(m.text());
    });
    p.on('pageerror', (e) => problems.push(e.message));
  }
  /** Form controls a screen reader could not name (no label, no aria-label). */
  const unlabelled = (p: Page = page) => p.evaluate(() => [...document.querySelectorAll('input, select, textarea')]
    .filter((el) => !el.closest('label') && !el.getAttribute('aria-label') && !(el.id && document.querySelector(`label[for="${el.id}"]`)))
    .map((el) => el.outerHTML));
  const shot = async (name: string, p: Page = page) => {
    expect(await unlabelled(p), `unlabelled controls on ${name}`).to.deep.equal([]);
    await screenshot(p, name);
  };

  const go = async (hash: string) => {
    await page.click(`nav a[href="#/${hash}"]`);
    await page.waitForFunction((h) => location.hash === `#/${h}`, hash);
  };
  /** Waits for `selector`; fails at once with the page's error (code and message) when one shows instead. */
  const shows = async (selector: string, p: Page = page) => {
    const el = await p.waitForSelector(`${selector}, #view .error`);
    if (await el.evaluate((e) => e.classList.contains('error'))) throw new Error(`the page shows an error instead of ${selector}: ${await el.textContent()}`);
    return el;
  };
  const errorCode = async (scope: string) => (await page.waitForSelector(`${scope} .error code`)).getAttribute('data-code');
  const okText = async (scope: string) => (await page.waitForSelector(`${scope} .ok`)).textContent();
  const field = async (list: string, name: string) => page.textContent(`${list} dd[data-field="${name}"]`);
  const meterId = () => page.evaluate(() => document.querySelector('#meter-info dd[data-field="Meter"]')?.textContent ?? '');
  let meter = '';
  let firstLabel: Buffer;
  let printedSequence = 0;

  it('serves the app at / with a Content-Security-Policy and no inline script', async () => {
    const res = await fetch(`${fx.url}/`);
    expect(res.status).to.equal(200);
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).to.include("script-src 'self'").and.not.include('unsafe-inline');
    // the sandbox processor: nothing of Stripe's is let in (test/web/web-stripe-checkout.test.ts has Stripe)
    expect(csp).not.to.include('stripe');
    expect(await (await fetch(`${fx.url}/v1/payment-methods`)).json()).to.deep.equal({ provider: 'sandbox', unitMills: 1, methods: ['card', 'ach', 'check'] });
    const html = await res.text();
    expect(html).to.match(/<script src="app.js" defer><\/script>/);
    expect(html).not.to.match(/<script>[^<]/);
    expect((await fetch(`${fx.url}/v1/nothing-here`)).status).to.equal(404);
    await page.waitForSelector('#import-form');
    await shot('01-meter-empty');
  });

  it('register: a root that does not anchor the module is refused (CERT_INVALID); with the right root the module identity is shown', async () => {
    await go('register');
    const wrongRoot = join(dir, 'wrong-root.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'wrong.key'), '-out', wrongRoot, '-subj', '/CN=Not the postal root', '-days', '2'], { stdio: 'ignore' });
    const root = join(dir, 'root.pem');
    writeFileSync(root, fx.rootPem);
    await page.fill('#register-form [name=name]', 'Acme Mail Room');
    await page.fill('#register-form [name=zip]', '20260');
    await page.fill('#register-form [name=returnAddress]', 'Acme Mail Room\n1 Main St\nWashington DC 20260');
    await page.setInputFiles('#register-form [name=root]', wrongRoot);
    await page.fill('#register-form [name=password]', PASSWORD);
    await page.fill('#register-form [name=password2]', PASSWORD);
    await page.click('#register-form button[type=submit]');
    expect(await errorCode('#view')).to.equal('CERT_INVALID');
    await shot('02-register-wrong-root');

    await page.setInputFiles('#register-form [name=root]', root);
    await page.click('#register-form button[type=submit]');
    await page.waitForSelector('#module-identity');
    const serial = await field('#module-identity', 'Module serial');
    const modules = (await (await fetch(`${fx.url}/v1/modules`)).json()) as { modules: Array<{ serial: string }> };
    expect(modules.modules.map((m) => m.serial)).to.include(serial);
    meter = (await field('#module-identity', 'Meter')) ?? '';
    expect(meter).to.have.length.above(0);
    expect(await field('#module-identity', 'Certificate SHA-256')).to.match(/^[0-9a-f]{64}$/);
    const stored = await page.evaluate(() => localStorage.getItem('vbi.keyFile') ?? '');
    expect(JSON.parse(stored)).to.include({ format: 'vbi-key-file', version: 1 });
    expect(stored).not.to.include(PASSWORD);
    await shot('03-register-done');
  });

  it('buy: bad input shows the API\'s code; a card purchase downloads; a check stays pending until settled', async () => {
    await go('buy');
    await page.fill('#buy-form [name=amount]', '12.3456');
    await page.click('#buy-form button[type=submit]');
    expect(await errorCode('#view')).to.equal('INVALID_AMOUNT');
    await page.fill('#buy-form [name=amount]', '20.00');
    await page.fill('#buy-form [name=token]', 'tok_decline');
    await page.click('#buy-form button[type=submit]');
    const declined = await errorCode('#view');
    expect(declined).to.be.a('string').and.not.equal('ERROR');
    await page.fill('#buy-form [name=token]', 'tok_approve');
    await page.focus('#buy-form [name=amount]');
    await page.keyboard.press('Enter'); // the form works from the keyboard
    expect(await okText('#view')).to.include('Bought $20.00');
    await shot('04-buy');

    await page.selectOption('#buy-form [name=kind]', 'check');
    await page.fill('#buy-form [name=amount]', '5.00');
    await page.fill('#buy-form [name=token]', 'tok_pending');
    await page.click('#buy-form button[type=submit]');
    expect(await okText('#view')).to.include('pending');
    await page.click('#settle');
    expect(await okText('#pending')).to.include('cleared');
    await shot('05-buy-check-settled');
  });

  it('balance: the registers the module reports', async () => {
    await go('balance');
    await page.waitForSelector('#balance dl');
    expect(await field('#balance', 'Postage available (descending register)')).to.equal(formatMills(25_000));
    expect(await field('#balance', 'Postage used (ascending register)')).to.equal(formatMills(0));
    await shot('06-balance');
  });

  it('print one label: rate from the rate table, preview, the downloaded PNG decodes with dmtxread; the PDF downloads', async () => {
    await go('print');
    await page.fill('#print-form [name=to]', 'Jane Doe\n2 Elm St\nSpringfield IL 62701');
    await page.fill('#print-form [name=zip]', '627010001');
    await page.selectOption('#print-form [name=class]', 'first-class-letter');
    await page.fill('#print-form [name=weight]', '1');
    const quote = computePostage({ mailClass: 'first-class-letter', weightOz: 1 });
    expect(await page.textContent('#quote')).to.include(formatMills(quote.postage));
    await page.click('#print-form button[type=submit]');
    const figure = await shows('#labels figure.preview');
    await page.waitForFunction(() => (document.querySelector('#labels figure img') as HTMLImageElement | null)?.complete === true);
    expect(await page.getAttribute('#session', 'data-state')).to.equal('live');
    printedSequence = Number(await figure.getAttribute('data-sequence'));
    await shot('07-print-preview');

    const [png] = await Promise.all([page.waitForEvent('download'), page.click('#labels .download-png')]);
    const pngPath = join(dir, 'label.png');
    await png.saveAs(pngPath);
    firstLabel = await readFirstDataMatrix(pngPath);
    const f = decodeIndicium(firstLabel).fields;
    expect(f.meterId).to.equal(meter);
    expect(f.postage).to.equal(quote.postage);
    expect(f.destinationZip).to.equal('627010001');
    expect(f.descendingRegister).to.equal(25_000 - quote.postage);

    const [pdf] = await Promise.all([page.waitForEvent('download'), page.click('#labels .download-pdf')]);
    const pdfPath = join(dir, 'label.pdf');
    await pdf.saveAs(pdfPath);
    expect(readFileSync(pdfPath).subarray(0, 5).toString('latin1')).to.equal('%PDF-');
  });

  it('the post\'s page (phone-sized): the downloaded label (PNG, PDF, JPEG) verifies VALID with its decoded fields; a picture without a symbol is BARCODE_NOT_FOUND', async () => {
    const phone = await browser.context.newPage();
    watch(phone);
    await phone.setViewportSize({ width: 390, height: 844 });
    await phone.goto(`${fx.url}/#/verify`);
    await phone.setInputFiles('#verify-form [name=label]', join(dir, 'label.png'));
    await phone.click('#verify-form button[type=submit]');
    const verdict = await phone.waitForSelector('#verdict');
    expect(await verdict.getAttribute('data-result')).to.equal('VALID');
    expect(await phone.textContent('#verify-fields dd[data-field="meterId"]')).to.equal(meter);
    expect(await phone.textContent('#verify-fields dd[data-field="destinationZip"]')).to.equal('627010001');
    await shot('08-verify-phone', phone);

    await phone.setInputFiles('#verify-form [name=label]', join(dir, 'label.pdf'));
    await phone.click('#verify-form button[type=submit]');
    expect(await phone.waitForSelector('#verdict').then((v) => v.getAttribute('data-result'))).to.equal('VALID');
    expect(await phone.textContent('#verify-fields dd[data-field="recorded"]')).to.equal('no');

    // a JPEG of the label, as a phone camera app would save it (encoded by the browser)
    const jpeg = await phone.evaluate(async (png) => {
      const img = new Image();
      img.src = `data:image/png;base64,${png}`;
      await img.decode();
      const canvas = document.createElement('canvas');
      canvas.width = img.naturalWidth;
      canvas.height = img.naturalHeight;
      canvas.getContext('2d')!.drawImage(img, 0, 0);
      return canvas.toDataURL('image/jpeg', 0.9).split(',')[1];
    }, readFileSync(join(dir, 'label.png')).toString('base64'));
    writeFileSync(join(dir, 'label.jpg'), Buffer.from(jpeg, 'base64'));
    await phone.setInputFiles('#verify-form [name=label]', join(dir, 'label.jpg'));
    await phone.click('#verify-form button[type=submit]');
    expect(await phone.waitForSelector('#verdict').then((v) => v.getAttribute('data-result'))).to.equal('VALID');

    const blank = join(dir, 'blank.png');
    writeFileSync(blank, new Resvg('<svg xmlns="http://www.w3.org/2000/svg" width="200" height="200"><rect width="200" height="200" fill="#fff"/></svg>').render().asPng());
    await phone.setInputFiles('#verify-form [name=label]', blank);
    await phone.click('#verify-form button[type=submit]');
    expect(await phone.waitForSelector('#view .error code').then((c) => c.getAttribute('data-code'))).to.equal('BARCODE_NOT_FOUND');
    // usable on a phone: nothing wider than the screen
    expect(await phone.evaluate(() => document.documentElement.scrollWidth)).to.be.at.most(390);
    await phone.close();
  });

  it('history with verified receipts; reprint gives the same indicium; a partial refund', async () => {
    await go('history');
    await page.waitForSelector('#history table');
    expect(await page.textContent('#history')).to.include('pvd');
    await page.click('#load-receipts');
    await page.waitForSelector('#receipts table');
    const receipts = await page.textContent('#receipts');
    expect(receipts).to.include('verified').and.not.include('DOES NOT VERIFY');
    // the receipt of the print lists the indicium by the number printed on the label
    await page.click(`#receipts button[data-indicium-sequence="${printedSequence}"]`);
    expect(await page.inputValue('#reprint-form [name=from]')).to.equal(String(printedSequence));
    expect(await page.inputValue('#reprint-form [name=to]')).to.equal(String(printedSequence));
    await page.fill('#reprint-form [name=to-address]', 'Jane Doe\n2 Elm St\nSpringfield IL 62701');
    await page.click('#reprint-form button[type=submit]');
    await shows('#reprints figure.preview');
    const [png] = await Promise.all([page.waitForEvent('download'), page.click('#reprints .download-png')]);
    const again = join(dir, 'reprint.png');
    await png.saveAs(again);
    expect((await readFirstDataMatrix(again)).equals(firstLabel)).to.equal(true);

    await page.selectOption('#refund-form [name=kind]', 'partial');
    await page.fill('#refund-form [name=amount]', '1.00');
    await page.fill('#refund-form [name=reason]', 'spoiled labels');
    await page.click('#refund-form button[type=submit]');
    expect(await page.waitForSelector('#refund-form + div.error code').then((c) => c.getAttribute('data-code'))).to.equal('SPOILAGE_LIMIT');
    await shot('09-refund-over-limit');
    // the spoilage limit is 1% of the ascending register
    const limit = Math.floor(computePostage({ mailClass: 'first-class-letter', weightOz: 1 }).postage / 100);
    await page.fill('#refund-form [name=amount]', (limit / 1000).toFixed(3));
    await page.click('#refund-form button[type=submit]');
    expect(await (await shows('#refund-form + div.ok')).textContent()).to.include(`Refunded ${formatMills(limit)}`);
    await shot('09-history-reprint-refund');
  });

  it('a dropped heartbeat shows at once; a CSV batch whose session runs out after its first item: the rest voided, not debited', async () => {
    await go('balance');
    await page.waitForSelector('#balance dl');
    const before = await page.evaluate(() => document.querySelector('#balance dd[data-field="Postage available (descending register)"]')?.textContent ?? '');
    await page.route('**/v1/sessions/*/heartbeat', (route) => route.abort('connectionfailed'));
    await page.waitForSelector('#session[data-state="down"]');
    await shot('10-link-dropped');
    await page.unroute('**/v1/sessions/*/heartbeat');
    await page.waitForSelector('#session[data-state="live"]');

    await go('print');
    const csv = join(dir, 'list.csv');
    writeFileSync(csv, 'to,zip,weight,file\n"Ann Lee|1 Ash St|Springfield IL 62701",62701,1,ann\n"Bo Kim|2 Oak St|Springfield IL 62702",62702,1,bo\n"Cy Ray|3 Elm St|Springfield IL 62703",62703,2,cy\n');
    await page.setInputFiles('#batch-form [name=csv]', csv);
    endSessionAfterFirstItem = true;
    await page.click('#batch-form button[type=submit]');
    const summary = await (await shows('#batch-form + div.ok')).textContent();
    expect(summary).to.include('1 printed, 2 voided, 0 failed');
    expect(await page.getAttribute('#batch-progress', 'value')).to.equal('3');
    expect(await page.textContent('#labels table')).to.include('SESSION_ENDED');
    expect(await page.$$('#labels figure.preview')).to.have.length(1);
    await page.waitForSelector('#session[data-state="ended"]');
    await shot('11-batch-voided');

    await go('balance');
    await page.waitForSelector('#balance dl');
    const postage = computePostage({ mailClass: 'first-class-letter', weightOz: 1 }).postage;
    const mills = (text: string) => Math.round(Number(text.replace(/[$,]/g, '')) * 1000);
    expect(mills((await field('#balance', 'Postage available (descending register)')) ?? '')).to.equal(mills(before) - postage);
  });

  it('the key file moves from the web app to the vbi CLI (balance, print) and back', async () => {
    await go('');
    await page.waitForSelector('#meter-info');
    expect(await meterId()).to.equal(meter);
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#export-key-file')]);
    const keyPath = join(dir, 'key.json');
    await dl.saveAs(keyPath);
    const env = { ...process.env, VBI_SERVER: fx.url, VBI_PASSWORD: PASSWORD, VBI_KEY_FILE: keyPath };
    // the CLI runs as its own process; this process serves its requests meanwhile
    const cli = async (...args: string[]) => (await promisify(execFile)(process.execPath, [CLI, ...args], { env, encoding: 'utf8' })).stdout;
    const balance = await cli('balance');
    expect(balance).to.include(meter);
    const cliLabel = join(dir, 'cli-label.png');
    await cli('print', '--to', 'John Roe|3 Oak St|Springfield IL 62701', '--zip', '62701', '--weight', '1', '--out', cliLabel);
    expect(decodeIndicium(await readFirstDataMatrix(cliLabel)).fields.meterId).to.equal(meter);
    const afterCli = (await KeyFile.open<ClientState>({ path: keyPath, password: PASSWORD })).state.registers;

    await page.setInputFiles('#import-form [name=keyFile]', keyPath);
    await page.fill('#import-form [name=password]', PASSWORD);
    await page.click('#import-form button[type=submit]');
    await page.waitForFunction(() => location.hash === '#/balance');
    await page.waitForSelector('#balance dl');
    expect(await field('#balance', 'Postage available (descending register)')).to.equal(formatMills(afterCli.descending));
    expect(await field('#balance', 'Postage used (ascending register)')).to.equal(formatMills(afterCli.ascending));
    await shot('12-balance-after-cli');

    // a new page load: the key file kept in this browser opens with the password only
    await page.reload();
    await go('');
    await page.waitForSelector('#open-form');
    await page.fill('#open-form [name=password]', 'not the password');
    await page.click('#open-form button[type=submit]');
    expect(await errorCode('#view')).to.equal('WRONG_PASSWORD');
    await shot('14-open-wrong-password');
    await page.fill('#open-form [name=password]', PASSWORD);
    await page.click('#open-form button[type=submit]');
    await page.waitForFunction(() => location.hash === '#/balance');
    await page.waitForSelector('#balance dl');
    expect(await field('#balance', 'Postage available (descending register)')).to.equal(formatMills(afterCli.descending));
  });

  it('a purchase whose answer is lost stays in the key file; the vbi CLI\'s recover finishes it from the downloaded file', async () => {
    await go('buy');
    // the service runs the purchase; the answer never reaches the page (every retry too)
    await page.route('**/v1/purchases', async (route) => {
      await route.fetch();
      await route.abort('connectionfailed');
    });
    await page.selectOption('#buy-form [name=kind]', 'card');
    await page.fill('#buy-form [name=amount]', '3.00');
    await page.fill('#buy-form [name=token]', 'tok_approve');
    await page.click('#buy-form button[type=submit]');
    expect(await errorCode('#view')).to.equal('NETWORK_ERROR');
    expect(await page.textContent('#view .error')).to.include('vbi recover');
    await page.unroute('**/v1/purchases');
    await go('');
    expect(await field('#meter-info', 'Requests whose answer was lost')).to.equal('1');
    await shot('15-pending-purchase');
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#export-key-file')]);
    const keyPath = join(dir, 'key-pending.json');
    await dl.saveAs(keyPath);
    const before = (await KeyFile.open<ClientState>({ path: keyPath, password: PASSWORD })).state;
    expect(before.pending?.map((x) => x.op)).to.deep.equal(['purchase']);
    const env = { ...process.env, VBI_SERVER: fx.url, VBI_PASSWORD: PASSWORD, VBI_KEY_FILE: keyPath };
    await promisify(execFile)(process.execPath, [CLI, 'recover', '--out', join(dir, 'recovered')], { env, encoding: 'utf8' });
    const after = (await KeyFile.open<ClientState>({ path: keyPath, password: PASSWORD })).state;
    expect(after.pending ?? []).to.deep.equal([]);
    // downloaded once: the registers moved by exactly the purchase
    expect(after.registers.ascending + after.registers.descending).to.equal(before.registers.ascending + before.registers.descending + 3000);
  });

  it('the operator\'s page: module states with an operator credential; without one OPERATOR_UNKNOWN', async () => {
    await go('operator');
    await page.fill('#operator-form [name=bearer]', `opt_${'A'.repeat(43)}`);
    await page.fill('#operator-form [name=meterId]', meter);
    await page.click('#operator-form button[type=submit]');
    expect(await errorCode('#view')).to.equal('OPERATOR_UNKNOWN');
    // a postal verifier scans the label twice: the second sighting is a duplicate and opens a case
    const verifier = await addCredential(fx.service.db.knex, 'verifier', 'e2e-plant');
    const post = await browser.context.newPage();
    watch(post);
    await post.goto(`${fx.url}/#/verify`);
    const verdicts: Array<string | null> = [];
    for (let i = 0; i < 2; i++) {
      await post.setInputFiles('#verify-form [name=label]', join(dir, 'label.png'));
      await post.fill('#verify-form [name=bearer]', verifier.token);
      await post.click('#verify-form button[type=submit]');
      verdicts.push(await post.waitForSelector('#verdict').then((v) => v.getAttribute('data-result')));
      expect(await post.textContent('#verify-fields dd[data-field="recorded"]')).to.include('yes');
    }
    expect(verdicts).to.deep.equal(['VALID', 'DUPLICATE']);
    await shot('16-verify-duplicate', post);
    await post.close();

    const op = await addCredential(fx.service.db.knex, 'operator', 'e2e-operator');
    await page.fill('#operator-form [name=bearer]', op.token);
    await page.click('#operator-form button[type=submit]');
    await shows('#operator-result table');
    const serial = fx.service.status().modules[0].serial;
    const row = await page.textContent(`#operator-result tr:has(td:text-is("${serial}"))`);
    expect(row).to.match(/Idle|User/).and.include('in rotation').and.include('passed');
    const pool = await fx.service.db.knex('pool').first('purchased', 'available');
    expect(await field('#pool', 'purchased')).to.equal(formatMills(Number(pool.purchased)));
    expect(await field('#pool', 'available')).to.equal(formatMills(Number(pool.available)));
    const newestAudit = await fx.service.db.knex('audit_log').orderBy('audit_id', 'desc').first('kind', 'module_serial');
    const firstAuditRow = await page.textContent('#operator-result table:nth-of-type(2) tbody tr');
    expect(firstAuditRow).to.include(newestAudit.module_serial).and.include(newestAudit.kind);
    const cases = await page.$$('#operator-result table:nth-of-type(3) tbody tr');
    expect(cases.length).to.be.at.least(1);
    expect(await cases[0].textContent()).to.include(meter);
    await shot('13-operator');
  });

  it('no page logged a script error or a Content-Security-Policy violation', () => {
    expect(problems).to.deep.equal([]);
  });
});
