import { expect } from 'chai';
import { createDecipheriv, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ServerFixture, serverFixture } from '../helpers/server';
import { RawClient } from '../helpers/raw-client';
import { passwordSecret } from '@vbi/core/protocol/messages';
import { indiciumAad } from '@vbi/core/protocol/bodies';
import { renderLabelPdf, renderLabelPng } from '@vbi/core/indicium/render/label';
import { readFirstDataMatrix } from '@vbi/core/indicium/decoder/dmtxread';
import { withPdfPagePng } from '@vbi/core/indicium/decoder/pdf-page';

/**
 * Indicia printed by the running service, end to end: the module signs, the client decrypts,
 * the label is rendered, an independent decoder (dmtxread) reads it back, and the service's
 * verifier checks it against the certificate store, also after the meter's key was renewed.
 */
describe('indicia printed by the service', function () {
  this.timeout(120_000);
  let f: ServerFixture;
  let c: RawClient;
  let sessionId: string;
  const sessionKey = randomBytes(32);
  const dir = mkdtempSync(join(process.env.VBI_TEST_ROOT as string, 'labels-'));

  before(async () => {
    f = await serverFixture();
    c = new RawClient(f.url);
    await c.register('label password');
    await c.op('/v1/purchases', 'purchase', { amount: 50_000, payment: { kind: 'card', token: 'tok_approve' } }, { 'Idempotency-Key': 'l-buy' });
    const open = await c.op('/v1/sessions', 'session-open', { moduleSerial: c.moduleSerial, encryptedPasswordSecret: c.encrypt(passwordSecret('label password', c.meterId)), encryptedSessionKey: c.encrypt(sessionKey) });
    sessionId = open.json.result.sessionId;
  });
  after(() => f.close());

  async function printOne(postage: number, key: string): Promise<Buffer> {
    const item = { destinationZip: '627010001', postage, ...c.dynamicPassword(sessionId, 'print', { destinationZip: '627010001', postage }) };
    const r = await c.op('/v1/indicia', 'print', { sessionId, items: [item] }, { 'Idempotency-Key': key });
    expect(r.json.items?.[0]?.status, JSON.stringify(r.json)).to.equal('printed');
    const blob = Buffer.from(r.json.items[0].encryptedIndicium, 'base64');
    const d = createDecipheriv('aes-256-gcm', sessionKey, blob.subarray(0, 12));
    d.setAAD(indiciumAad(sessionId, item.counter));
    d.setAuthTag(blob.subarray(blob.length - 16));
    return Buffer.concat([d.update(blob.subarray(12, blob.length - 16)), d.final()]);
  }

  const verify = async (indicium: Buffer, location: string) => (await c.call('POST', '/v1/verify', { indicium: indicium.toString('base64'), location })).json;

  it('renders a label whose DataMatrix an independent decoder reads back byte for byte, and it verifies', async () => {
    const indicium = await printOne(680, 'l-1');
    const png = join(dir, 'label.png');
    writeFileSync(png, await renderLabelPng({ indicium, size: 'label-4x6', deliveryAddress: ['Jane Doe', '2 Elm St', 'Springfield IL 62701'], returnAddress: ['Raw Mailer', '1 Test St'] }));
    const decoded = await readFirstDataMatrix(png);
    expect(decoded.equals(indicium)).to.equal(true);
    expect((await verify(decoded, 'png')).result).to.equal('VALID');
  });

  it('a label PDF renders (pdftoppm) and shows the same barcode', async () => {
    const indicium = await printOne(550, 'l-2');
    const pdf = join(dir, 'label.pdf');
    writeFileSync(pdf, await renderLabelPdf({ indicium, size: 'envelope-10', deliveryAddress: ['Jane Doe', '2 Elm St', 'Springfield IL 62701'] }));
    const decoded = await withPdfPagePng(pdf, 300, (page) => readFirstDataMatrix(page));
    expect(decoded.equals(indicium)).to.equal(true);
  });

  it('an indicium signed before a key renewal still verifies after it, and so does one signed after', async () => {
    const before = await printOne(700, 'l-3');
    const renewed = await f.server.metergen.renewKey({ meterId: c.meterId });
    expect(renewed.previousSerialHex).to.not.equal(renewed.serialHex);
    const afterRenewal = await printOne(710, 'l-4');
    expect((await verify(before, 'after renewal, old key')).result).to.equal('VALID');
    const v = await verify(afterRenewal, 'after renewal, new key');
    expect(v.result).to.equal('VALID');
    expect(v.fields.certSerial).to.equal(renewed.serialHex);
  });

  it('a one-byte change anywhere in a printed indicium is BAD_SIGNATURE, UNKNOWN_CERTIFICATE or MALFORMED', async () => {
    const indicium = await printOne(120, 'l-5');
    const seen = new Set<string>();
    for (let i = 0; i < indicium.length; i++) {
      const bad = Buffer.from(indicium);
      bad[i] ^= 0x01;
      const r = await verify(bad, `flip ${i}`);
      expect(['BAD_SIGNATURE', 'UNKNOWN_CERTIFICATE', 'MALFORMED'], `byte ${i}: ${r.result}`).to.include(r.result);
      seen.add(r.result);
    }
    expect(seen.has('BAD_SIGNATURE')).to.equal(true);
  });

  it('a retried print with the same Idempotency-Key is answered again and debited once', async () => {
    const bal = async () => (await c.op('/v1/balance', 'balance', {})).json.result.descending as number;
    const start = await bal();
    const item = { destinationZip: '627010001', postage: 330, ...c.dynamicPassword(sessionId, 'print', { destinationZip: '627010001', postage: 330 }) };
    const env = c.envelope('print', { sessionId, items: [item] });
    const first = await c.send('/v1/indicia', env, { 'Idempotency-Key': 'l-retry' });
    const retry = await c.call('POST', '/v1/indicia', env, { 'Idempotency-Key': 'l-retry' });
    expect(retry.status).to.equal(200);
    expect(retry.json.items[0].indiciumId).to.equal(first.json.items[0].indiciumId);
    expect(await bal()).to.equal(start - 330);
  });
});
