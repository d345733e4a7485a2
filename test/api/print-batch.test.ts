import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { ServerFixture, serverFixture } from '../helpers/server';
import { RawClient } from '../helpers/raw-client';
import { conservation } from '@vbi/server/ledger/conservation';
import { verifyJournal } from '@vbi/server/ledger/journal-verify';
import { passwordSecret, Receipt } from '@vbi/core/protocol/messages';
import { batchRootSync, receiptBatchSignedBytes, receiptLeafInput } from '@vbi/core/protocol/receipt-batch';
import { ReceiptVerifier } from '@vbi/client/client/module-trust';
import { createHash, createPublicKey, verify, X509Certificate } from 'node:crypto';
import { verifyIndiciumSignature } from '@vbi/core/indicium/signature';
import { decryptIndicium } from '@vbi/client/client/client-crypto';
import { decodeIndicium } from '@vbi/core/indicium/layout';

/**
 * A print request is one module dispatch and one transaction (docs/protocol.md 4), against the
 * real service: a refused item fails alone and the others' results, registers and receipts stay
 * right; a bad dynamic password voids the rest; the journal holds one record for the request with
 * one indicium row per printed item, and verify-journal and conservation agree.
 */
describe('print requests: one dispatch, items that fail alone', function () {
  this.timeout(120_000);
  let f: ServerFixture;
  const password = 'batch password';

  before(async () => {
    f = await serverFixture();
  });
  after(async () => {
    await f?.close();
  });

  async function mailer(funds: number): Promise<{ c: RawClient; sessionId: string; sessionKey: Buffer }> {
    const c = new RawClient(f.url);
    await c.register(password);
    const buy = await c.op('/v1/purchases', 'purchase', { amount: funds, payment: { kind: 'card', token: 'tok_approve' } }, { 'Idempotency-Key': `buy-${c.meterId}` });
    expect(buy.status, JSON.stringify(buy.json)).to.equal(200);
    const sessionKey = randomBytes(32);
    const open = await c.op('/v1/sessions', 'session-open', {
      moduleSerial: c.moduleSerial, encryptedPasswordSecret: c.encrypt(passwordSecret(password, c.meterId)), encryptedSessionKey: c.encrypt(sessionKey),
    });
    expect(open.status, JSON.stringify(open.json)).to.equal(200);
    return { c, sessionId: open.json.result.sessionId, sessionKey };
  }

  const item = (c: RawClient, sessionId: string, postage: number) => ({ destinationZip: '205000001', postage, ...c.dynamicPassword(sessionId, 'print', { destinationZip: '205000001', postage }) });

  it('an item beyond the funds and one with a used counter fail alone; the others print, registers and receipts follow', async () => {
    const { c, sessionId } = await mailer(2_000);
    const a = item(c, sessionId, 700);
    const tooMuch = item(c, sessionId, 5_000);
    const b = item(c, sessionId, 800);
    const reused = { ...item(c, sessionId, 100), counter: b.counter }; // a counter already used in this request
    reused.dynamicPassword = c.dynamicPasswordFor(sessionId, reused.counter, reused.clientTime, { destinationZip: '205000001', postage: 100 });
    const r = await c.op('/v1/indicia', 'print', { sessionId, items: [a, tooMuch, b, reused] }, { 'Idempotency-Key': 'mixed' });
    expect(r.status, JSON.stringify(r.json)).to.equal(200);
    expect(r.json.items.map((i: { status: string; reason?: string }) => [i.status, i.reason ?? null])).to.deep.equal([
      ['printed', null], ['failed', 'INSUFFICIENT_FUNDS'], ['printed', null], ['failed', 'STALE_CHALLENGE'],
    ]);
    const [first, , second] = r.json.items;
    expect([first.receipt.ascendingRegister, first.receipt.descendingRegister]).to.deep.equal([700, 1_300]);
    expect([second.receipt.ascendingRegister, second.receipt.descendingRegister]).to.deep.equal([1_500, 500]);
    expect(second.receipt.sequence).to.equal(first.receipt.sequence + 1);
    // the authorisation's receipt follows the items and carries the registers after them
    expect(r.json.authorization.receipt).to.include({ sequence: second.receipt.sequence + 1, amount: 1_500, ascendingRegister: 1_500, descendingRegister: 500 });
    expect(r.json.registers).to.deep.equal({ ascending: 1_500, descending: 500 });

    const rows = await f.service.db.knex('indicia').where({ meter_id: c.meterId }).orderBy('sequence').select('postage', 'checkpoint_seq', 'item_index');
    expect(rows.map((x) => [Number(x.postage), x.item_index])).to.deep.equal([[700, 0], [800, 2]]);
    expect(rows[0].checkpoint_seq).to.equal(rows[1].checkpoint_seq);
    const report = await verifyJournal({ db: f.service.db.knex, hsm: f.service.engines[0].hsm });
    expect(report.findings).to.deep.equal([]);
    expect((await conservation(f.service.db.knex, { hsm: f.service.engines[0].hsm })).violations).to.deep.equal([]);
  });

  it('a 40-item request cut into chunks over several key scopes: every item gets its own indicium, encryption and receipt, in order', async () => {
    const { c, sessionId, sessionKey } = await mailer(100_000);
    const postages = Array.from({ length: 40 }, (_, i) => (i === 25 ? 500_000 : 100 + i));
    const items = postages.map((p) => item(c, sessionId, p));
    const r = await c.op('/v1/indicia', 'print', { sessionId, items }, { 'Idempotency-Key': 'forty' });
    expect(r.status, JSON.stringify(r.json)).to.equal(200);
    expect(r.json.items.map((i: { status: string; reason?: string }) => i.reason ?? i.status)).to.deep.equal(postages.map((_, i) => (i === 25 ? 'INSUFFICIENT_FUNDS' : 'printed')));

    const identity = createPublicKey({ key: f.service.engines[0].hsm.identityPublicKey(), format: 'der', type: 'spki' });
    const cert = await f.service.db.knex('certificates').where({ meter_id: c.meterId }).first('certificate_der');
    const indiciumKey = new X509Certificate(cert.certificate_der).publicKey;
    let ar = 0;
    // receipts: the record counter's next values; indicia: the meter's first piece numbers (the refused item takes neither)
    let sequence = r.json.items[0].receipt.sequence;
    let piece = 1;
    const roots = new Set<string>();
    const signatures = new Set<string>();
    for (const [i, it] of r.json.items.entries()) {
      if (i === 25) continue;
      ar += postages[i];
      // one batch receipt per item: its path leads to the request's one signed root
      const { signature, batch, ...unsigned } = it.receipt;
      expect(batch).to.include({ size: 39, index: piece - 1 });
      const root = batchRootSync(sha256(receiptLeafInput(unsigned)), batch, sha256);
      expect(root, `receipt ${i}`).to.be.instanceOf(Buffer);
      roots.add(root!.toString('base64'));
      signatures.add(signature);
      expect(verify('sha256', receiptBatchSignedBytes({ root: root!, size: 39 }), { key: identity, dsaEncoding: 'ieee-p1363' }, Buffer.from(signature, 'base64')), `receipt ${i}`).to.equal(true);
      expect(unsigned).to.include({ amount: postages[i], ascendingRegister: ar, descendingRegister: 100_000 - ar, sequence });
      // the indicium decrypts under the session key with this item's counter and carries this item's values
      const indicium = decryptIndicium({ sessionKey, sessionId, counter: items[i].counter, encryptedIndicium: it.encryptedIndicium });
      const decoded = decodeIndicium(indicium);
      expect(decoded.fields).to.include({ postage: postages[i], ascendingRegister: ar, descendingRegister: 100_000 - ar, sequence: piece });
      expect(verifyIndiciumSignature({ algorithm: decoded.fields.algorithm, publicKey: indiciumKey, data: decoded.data, signature: decoded.signature }), `indicium ${i}`).to.equal(true);
      sequence++;
      piece++;
    }
    expect(piece - 1).to.equal(39);
    expect([roots.size, signatures.size]).to.deep.equal([1, 1]);
    expect(r.json.authorization.receipt.sequence).to.equal(sequence);
    expect((await conservation(f.service.db.knex, { hsm: f.service.engines[0].hsm })).violations).to.deep.equal([]);
  });

  it('an item whose field the indicium cannot carry fails alone before it is debited; the items around it print with consecutive sequences', async () => {
    const { c, sessionId } = await mailer(5_000);
    const a = item(c, sessionId, 600);
    const badDate = { ...item(c, sessionId, 400), dateOfMailing: '2100-01-01' }; // the indicium carries 2000-2099
    const b = item(c, sessionId, 900);
    const r = await c.op('/v1/indicia', 'print', { sessionId, items: [a, badDate, b] }, { 'Idempotency-Key': 'bad-field' });
    expect(r.status, JSON.stringify(r.json)).to.equal(200);
    expect(r.json.items.map((i: { status: string; reason?: string }) => [i.status, i.reason ?? null])).to.deep.equal([
      ['printed', null], ['failed', 'INDICIUM_FIELD_INVALID'], ['printed', null],
    ]);
    const [first, , second] = r.json.items;
    expect([first.receipt.ascendingRegister, second.receipt.ascendingRegister, second.receipt.descendingRegister]).to.deep.equal([600, 1_500, 3_500]);
    expect(second.receipt.sequence).to.equal(first.receipt.sequence + 1);
    expect(r.json.registers).to.deep.equal({ ascending: 1_500, descending: 3_500 });
    const rows = await f.service.db.knex('indicia').where({ meter_id: c.meterId }).orderBy('sequence').select('sequence', 'item_index');
    expect(rows.map((x) => [Number(x.sequence), x.item_index])).to.deep.equal([[1, 0], [2, 2]]); // the meter's first two pieces: the refused item took no number
    expect((await conservation(f.service.db.knex, { hsm: f.service.engines[0].hsm })).violations).to.deep.equal([]);
  });

  it('a bad dynamic password voids that item and the rest, ends the session, and debits nothing for them', async () => {
    const { c, sessionId } = await mailer(10_000);
    const good = item(c, sessionId, 300);
    const forged = { ...item(c, sessionId, 300), dynamicPassword: randomBytes(32).toString('base64') };
    const after = item(c, sessionId, 300);
    const r = await c.op('/v1/indicia', 'print', { sessionId, items: [good, forged, after] }, { 'Idempotency-Key': 'forged' });
    expect(r.status, JSON.stringify(r.json)).to.equal(200);
    expect(r.json.items.map((i: { status: string; reason?: string }) => [i.status, i.reason ?? null])).to.deep.equal([
      ['printed', null], ['voided', 'BAD_DYNAMIC_PASSWORD'], ['voided', 'BAD_DYNAMIC_PASSWORD'],
    ]);
    expect(r.json.registers).to.deep.equal({ ascending: 300, descending: 9_700 });
    const s = await f.service.db.knex('sessions').where({ session_id: sessionId }).first('state');
    expect(s.state).to.equal('ended');
    const again = await c.op('/v1/indicia', 'print', { sessionId, items: [item(c, sessionId, 300)] }, { 'Idempotency-Key': 'after-forged' });
    expect(again.json.error.code).to.equal('SESSION_ENDED');
    expect((await f.service.db.knex('indicia').where({ meter_id: c.meterId })).length).to.equal(1);
    expect((await verifyJournal({ db: f.service.db.knex, hsm: f.service.engines[0].hsm })).findings).to.deep.equal([]);
  });

  it("a batch receipt proves its own item only: an edited field, another item's path, a moved index or a changed size do not verify", async () => {
    const { c, sessionId } = await mailer(10_000);
    const postages = [110, 120, 130, 140, 150];
    const r = await c.op('/v1/indicia', 'print', { sessionId, items: postages.map((p) => item(c, sessionId, p)) }, { 'Idempotency-Key': 'five' });
    expect(r.status, JSON.stringify(r.json)).to.equal(200);
    const receipts: Receipt[] = r.json.items.map((i: { receipt: Receipt }) => i.receipt);
    const verifier = () => new ReceiptVerifier(c.modules);
    // each as it came verifies, also alone (a verifier that saw no other item of the batch)
    for (const rc of receipts) expect(verifier().verify(rc), `receipt ${rc.batch?.index}`).to.equal(true);
    const v = verifier();
    for (const rc of receipts) expect(v.verify(rc)).to.equal(true);
    const edits: Array<[string, Receipt]> = [
      ['amount', { ...receipts[2], amount: 1 }],
      ['registers', { ...receipts[2], descendingRegister: receipts[2].descendingRegister + 130 }],
      ['sequence', { ...receipts[2], sequence: receipts[3].sequence }],
      ["another item's path", { ...receipts[2], batch: { ...receipts[2].batch!, path: receipts[3].batch!.path } }],
      ['index', { ...receipts[2], batch: { ...receipts[2].batch!, index: 3 } }],
      ['size', { ...receipts[4], batch: { ...receipts[4].batch!, size: 6 } }],
      ['a path one hash short', { ...receipts[0], batch: { ...receipts[0].batch!, path: receipts[0].batch!.path.slice(1) } }],
      ['no batch (read as a single receipt)', (({ batch: _b, ...rest }) => rest)(receipts[1])],
    ];
    // also with the verifier that has just seen the genuine root signed
    for (const [what, rc] of edits) {
      expect(v.verify(rc), what).to.equal(false);
      expect(verifier().verify(rc), what).to.equal(false);
    }
    // the authorisation's receipt stays a single one
    expect(r.json.authorization.receipt.batch).to.equal(undefined);
    expect(v.verify(r.json.authorization.receipt)).to.equal(true);
  });
});

function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}
