import { expect } from 'chai';
import { addCredential, revokeCredential } from '@vbi/server/api/credentials';
import { auditRecords } from '@vbi/server/ledger/audit-store';
import { createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { ServerFixture, serverFixture } from '../helpers/server';
import { RawClient } from '../helpers/raw-client';
import { conservation } from '@vbi/server/ledger/conservation';
import { routesMissingFromSpec } from '@vbi/server/api/openapi';
import { decodeIndicium } from '@vbi/core/indicium/layout';
import { responseMacInput, passwordSecret } from '@vbi/core/protocol/messages';
import { indiciumAad } from '@vbi/core/protocol/bodies';

/** Everything a rejected request must leave untouched. */
async function snapshotOf(f: ServerFixture, meterId: string): Promise<unknown> {
  const k = f.service.db.knex;
  return {
    meter: await k('meters').where({ meter_id: meterId }).first('package', 'record_counter'),
    journal: (await k('journal').where({ meter_id: meterId }).count({ n: '*' }).first())?.n,
    payments: await k('payments').where({ meter_id: meterId }).orderBy('payment_id').select('status', 'amount'),
    pool: await k('pool').first(),
  };
}

describe('mailer protocol over HTTP (raw messages)', function () {
  this.timeout(120_000);
  let f: ServerFixture;
  let now = Date.now();
  const password = 'correct horse battery staple';

  before(async () => {
    f = await serverFixture({ mailer: { clock: () => now, heartbeatIntervalMs: 10_000 } });
  });
  after(() => f.close());
  beforeEach(() => {
    now = Date.now();
  });

  it('registers, and every later request is HMAC-checked with a fresh challenge each round', async () => {
    const c = new RawClient(f.url);
    await c.register(password);
    const first = c.challenge;
    const r = await c.op('/v1/balance', 'balance', {});
    expect(r.status, JSON.stringify(r.json)).to.equal(200);
    expect(r.json.result).to.deep.include({ ascending: 0, descending: 0, state: 'active' });
    expect(r.json.challenge).to.not.equal(first);
    const { mac, ...rest } = r.json;
    expect(createHmac('sha256', c.hmk).update(responseMacInput(rest)).digest('base64')).to.equal(mac);
    expect(r.json.receipt).to.include({ meterId: c.meterId, op: 'balance', sequence: r.json.receipt.sequence });
  });

  it('refuses replayed, stale, re-echoed, tampered and wrong-password messages and changes nothing', async () => {
    const c = new RawClient(f.url);
    await c.register(password);
    const buy = c.envelope('purchase', { amount: 5_000, payment: { kind: 'card', token: 'tok_approve' } });
    expect((await c.send('/v1/purchases', buy, { 'Idempotency-Key': 'buy-1' })).status).to.equal(200);
    const before = await snapshotOf(f, c.meterId);

    // a replay of the same message under a new idempotency key: its challenge is used up
    const replay = await c.call('POST', '/v1/purchases', buy, { 'Idempotency-Key': 'buy-2' });
    expect([replay.status, replay.json.error.code]).to.deep.equal([409, 'STALE_CHALLENGE']);
    // tampered body: amount changed after the MAC
    const tampered = c.envelope('purchase', { amount: 5_000, payment: { kind: 'card', token: 'tok_approve' } });
    tampered.body.amount = 50_000;
    const t = await c.call('POST', '/v1/purchases', tampered, { 'Idempotency-Key': 'buy-3' });
    expect([t.status, t.json.error.code]).to.deep.equal([401, 'BAD_MAC']);
    // wrong register echo
    const saved = c.registers;
    c.registers = { ascending: 0, descending: 999 };
    const echo = await c.op('/v1/balance', 'balance', {});
    expect([echo.status, echo.json.error.code]).to.deep.equal([409, 'REGISTER_MISMATCH']);
    c.registers = saved;
    // a forged MAC (another HMK)
    const forged = new RawClient(f.url);
    Object.assign(forged, { meterId: c.meterId, challenge: c.challenge, registers: c.registers });
    const fr = await forged.op('/v1/balance', 'balance', {});
    expect([fr.status, fr.json.error.code]).to.deep.equal([401, 'BAD_MAC']);
    // wrong password at session open
    const wrong = await c.op('/v1/sessions', 'session-open', {
      moduleSerial: c.moduleSerial, encryptedPasswordSecret: c.encrypt(passwordSecret('wrong password', c.meterId)), encryptedSessionKey: c.encrypt(randomBytes(32)),
    });
    expect([wrong.status, wrong.json.error.code]).to.deep.equal([401, 'WRONG_PASSWORD']);
    expect(await snapshotOf(f, c.meterId)).to.deep.equal(before);
    // the legitimate client goes on with the challenge it holds
    expect((await c.op('/v1/balance', 'balance', {})).json.result.descending).to.equal(5_000);
  });

  it('purchases: approved, declined, pending then cleared; a retried purchase never charges twice', async () => {
    const c = new RawClient(f.url);
    await c.register(password);
    const buy = c.envelope('purchase', { amount: 20_000, payment: { kind: 'card', token: 'tok_approve' } });
    const ok = await c.send('/v1/purchases', buy, { 'Idempotency-Key': 'p-1' });
    expect(ok.json.result).to.include({ status: 'approved', amount: 20_000 });
    const charged = () => f.service.db.knex('payments').where({ meter_id: c.meterId }).count({ n: '*' }).first();
    const before = await charged();
    // the same request again (the answer was lost): the stored answer, no second charge
    const again = await fetch(`${f.url}/v1/purchases`, { method: 'POST', headers: { 'content-type': 'application/json', 'Idempotency-Key': 'p-1' }, body: JSON.stringify(buy) });
    expect(again.status).to.equal(200);
    expect(again.headers.get('idempotent-replay')).to.equal('true');
    expect((await again.json()).receipt).to.deep.equal(ok.json.receipt);
    expect(await charged()).to.deep.equal(before);
    // the same key with another body is refused
    const reused = await c.call('POST', '/v1/purchases', c.envelope('purchase', { amount: 1, payment: { kind: 'card', token: 'tok_approve' } }), { 'Idempotency-Key': 'p-1' });
    expect([reused.status, reused.json.error.code]).to.deep.equal([409, 'IDEMPOTENCY_KEY_REUSED']);
    const declined = await c.op('/v1/purchases', 'purchase', { amount: 1_000, payment: { kind: 'card', token: 'tok_decline' } }, { 'Idempotency-Key': 'p-2' });
    expect([declined.status, declined.json.error.code]).to.deep.equal([402, 'PAYMENT_DECLINED']);
    const pending = await c.op('/v1/purchases', 'purchase', { amount: 7_000, payment: { kind: 'check', token: 'tok_approve' } }, { 'Idempotency-Key': 'p-3' });
    expect(pending.json.result).to.include({ status: 'pending' });
    expect(pending.json.registers.descending).to.equal(20_000);
    const settled = await c.op(`/v1/purchases/${pending.json.result.paymentId}/settle`, 'purchase', { paymentId: pending.json.result.paymentId });
    expect(settled.status, JSON.stringify(settled.json)).to.equal(200);
    expect(settled.json.result).to.include({ status: 'approved' });
    expect(settled.json.registers.descending).to.equal(27_000);
    expect((await conservation(f.service.db.knex, { hsm: f.service.engines[0].hsm })).violations).to.deep.equal([]);
  });

  it('a missed heartbeat during a batch voids the rest of the batch; nothing is debited for it', async () => {
    const c = new RawClient(f.url);
    await c.register(password);
    await c.op('/v1/purchases', 'purchase', { amount: 100_000, payment: { kind: 'card', token: 'tok_approve' } }, { 'Idempotency-Key': 'hb-buy' });
    const sessionKey = randomBytes(32);
    const open = await c.op('/v1/sessions', 'session-open', { moduleSerial: c.moduleSerial, encryptedPasswordSecret: c.encrypt(passwordSecret(password, c.meterId)), encryptedSessionKey: c.encrypt(sessionKey) });
    expect(open.status, JSON.stringify(open.json)).to.equal(200);
    const sessionId = open.json.result.sessionId;
    const hb = c.dynamicPassword(sessionId, 'heartbeat');
    expect((await c.call('POST', `/v1/sessions/${sessionId}/heartbeat`, { meterId: c.meterId, ...hb })).status).to.equal(200);

    // the client stops sending heartbeats after the second item: the session times out
    f.server.mailer['core'].opts.afterItem = (i: number) => {
      if (i === 1) now += 31_000;
    };
    try {
      const items = [680, 680, 680, 680].map((postage) => ({ destinationZip: '205000001', postage, ...c.dynamicPassword(sessionId, 'print', { destinationZip: '205000001', postage }) }));
      const r = await c.op('/v1/indicia', 'print', { sessionId, items }, { 'Idempotency-Key': 'batch-1' });
      expect(r.status, JSON.stringify(r.json)).to.equal(200);
      expect(r.json.items.map((i: { status: string }) => i.status)).to.deep.equal(['printed', 'printed', 'voided', 'voided']);
      expect(r.json.registers).to.deep.equal({ ascending: 1_360, descending: 98_640 });
      // the printed indicia decrypt with the session key and carry the registers
      const it = r.json.items[1];
      const blob = Buffer.from(it.encryptedIndicium, 'base64');
      const d = createDecipheriv('aes-256-gcm', sessionKey, blob.subarray(0, 12));
      d.setAAD(indiciumAad(sessionId, items[1].counter));
      d.setAuthTag(blob.subarray(blob.length - 16));
      const indicium = Buffer.concat([d.update(blob.subarray(12, blob.length - 16)), d.final()]);
      expect(decodeIndicium(indicium).fields).to.include({ meterId: c.meterId, postage: 680, ascendingRegister: 1_360 });
    } finally {
      f.server.mailer['core'].opts.afterItem = undefined;
    }
    const hb2 = c.dynamicPassword(sessionId, 'heartbeat');
    const late = await c.call('POST', `/v1/sessions/${sessionId}/heartbeat`, { meterId: c.meterId, ...hb2 });
    expect([late.status, late.json.error.code]).to.deep.equal([401, 'SESSION_ENDED']);
    expect((await c.op('/v1/balance', 'balance', {})).json.result).to.include({ ascending: 1_360, descending: 98_640 });
    expect((await conservation(f.service.db.knex, { hsm: f.service.engines[0].hsm })).violations).to.deep.equal([]);
  });

  it('verifies a printed indicium: public checks record nothing; postal verifiers record sightings, open fraud cases on duplicates, and the policy suspends; only an operator reactivates, on the signed audit record', async () => {
    const c = new RawClient(f.url);
    await c.register(password);
    await c.op('/v1/purchases', 'purchase', { amount: 10_000, payment: { kind: 'card', token: 'tok_approve' } }, { 'Idempotency-Key': 'v-buy' });
    const sessionKey = randomBytes(32);
    const open = await c.op('/v1/sessions', 'session-open', { moduleSerial: c.moduleSerial, encryptedPasswordSecret: c.encrypt(passwordSecret(password, c.meterId)), encryptedSessionKey: c.encrypt(sessionKey) });
    const sessionId = open.json.result.sessionId;
    const item = { destinationZip: '205000001', postage: 680, rate: { mailClass: 'first-class-letter', weightOz: 1 } };
    const quote = await c.call('GET', '/v1/rates?mailClass=first-class-letter&weightOz=1');
    item.postage = quote.json.postage;
    const dp = c.dynamicPassword(sessionId, 'print', { destinationZip: item.destinationZip, postage: item.postage });
    const r = await c.op('/v1/indicia', 'print', { sessionId, items: [{ ...item, ...dp }] }, { 'Idempotency-Key': 'v-print' });
    expect(r.json.items[0].status, JSON.stringify(r.json)).to.equal('printed');
    const row = await f.service.db.knex('indicia').where({ indicium_id: r.json.items[0].indiciumId }).first();
    const indicium = Buffer.concat([row.data, row.signature]);
    const b64 = indicium.toString('base64');
    const knex = f.service.db.knex;
    const state = async () => (await knex('meters').where({ meter_id: c.meterId }).first('state')).state;
    // anyone (the mailer checking its label, a photo of it): answered, nothing recorded, however often
    for (const body of [{ indicium: b64, record: false }, { indicium: b64 }, { indicium: b64, location: 'plant A' }, { indicium: b64 }]) {
      const v = await c.call('POST', '/v1/verify', body);
      expect([v.json.result, v.json.recorded, v.json.firstSeen]).to.deep.equal(['VALID', false, undefined]);
    }
    expect(await knex('indicium_scans').where({ meter_id: c.meterId })).to.have.length(0);
    expect(await knex('fraud_reports').where({ meter_id: c.meterId })).to.have.length(0);
    expect(await state()).to.equal('active');
    // a bearer that is not a credential (or a revoked one) is refused and records nothing
    const asVerifier = (token: string, body: Record<string, unknown>) => c.call('POST', '/v1/verify', body, { authorization: `Bearer ${token}` });
    const plantA = await addCredential(knex, 'verifier', 'plant A');
    const plantB = await addCredential(knex, 'verifier', 'plant B');
    const plantC = await addCredential(knex, 'verifier', 'plant C');
    const gone = await addCredential(knex, 'verifier', 'plant Z');
    const operator = await addCredential(knex, 'operator', 'Olga Operator');
    await revokeCredential(knex, gone.id);
    for (const token of ['pvt_' + 'x'.repeat(43), gone.token, 'not-a-token', operator.token]) {
      const v = await asVerifier(token, { indicium: b64 });
      expect([v.status, v.json.error.code]).to.deep.equal([401, 'VERIFIER_UNKNOWN']);
    }
    expect(await knex('indicium_scans').where({ meter_id: c.meterId })).to.have.length(0);
    const v1 = await asVerifier(plantA.token, { indicium: b64, location: 'sorter 3' });
    expect(v1.json.result, JSON.stringify(v1.json)).to.equal('VALID');
    expect(v1.json.recorded).to.equal(true);
    expect(v1.json.fields).to.include({ rateCategory: quote.json.rateCategory, rateTableId: quote.json.rateTableId });
    const v2 = await asVerifier(plantB.token, { indicium: b64 });
    expect(v2.json.result).to.equal('DUPLICATE');
    expect(v2.json.firstSeen).to.include({ location: 'sorter 3', plant: 'plant A', otherIndicium: false });
    // the first repeat opens a case, it does not suspend
    expect(await knex('fraud_reports').where({ meter_id: c.meterId })).to.have.length(1);
    expect(await state()).to.equal('active');
    // (the scheme name is case-insensitive)
    const v3 = await c.call('POST', '/v1/verify', { indicium: b64 }, { authorization: `bearer ${plantC.token}` });
    expect(v3.json.result).to.equal('DUPLICATE');
    expect(await state()).to.equal('suspended');
    expect(await knex('fraud_reports').where({ meter_id: c.meterId }).count({ n: '*' }).first()).to.deep.equal({ n: 2 });

    // the operator reviews the cases and reactivates; nobody else can
    const asOperator = (method: string, path: string, token: string, body?: unknown) => c.call(method, path, body, { authorization: `Bearer ${token}` });
    const reactivate = `/v1/operator/meters/${c.meterId}/reactivate`;
    for (const token of [plantA.token, 'opt_' + 'y'.repeat(43)]) {
      const r = await asOperator('POST', reactivate, token, { reason: 'reviewed' });
      expect([r.status, r.json.error.code]).to.deep.equal([401, 'OPERATOR_UNKNOWN']);
    }
    const anonymous = await c.call('POST', reactivate, { reason: 'reviewed' });
    expect([anonymous.status, anonymous.json.error.code]).to.deep.equal([401, 'OPERATOR_UNKNOWN']);
    expect(await state()).to.equal('suspended');
    const cases = await asOperator('GET', `/v1/operator/fraud-cases?meterId=${c.meterId}`, operator.token);
    expect(cases.json.cases.map((x: { kind: string }) => x.kind)).to.deep.equal(['duplicate_indicium', 'duplicate_indicium']);
    expect(cases.json.cases[0].details.seenAgain.plant).to.equal('plant C');
    const ok = await asOperator('POST', reactivate, operator.token, { reason: 'case 1-2: the mailer mailed one label twice by mistake; refunded' });
    expect(ok.status, JSON.stringify(ok.json)).to.equal(200);
    expect(await state()).to.equal('active');
    const again = await asOperator('POST', reactivate, operator.token, { reason: 'again' });
    expect([again.status, again.json.error.code]).to.deep.equal([409, 'METER_NOT_SUSPENDED']);
    // reported lost: the operator suspends by hand; a meter that still holds postage cannot be withdrawn
    const lost = await asOperator('POST', `/v1/operator/meters/${c.meterId}/suspend`, operator.token, { reason: 'reported stolen by the mailer' });
    expect([lost.status, lost.json.state]).to.deep.equal([200, 'suspended']);
    expect(await state()).to.equal('suspended');
    const notEmpty = await asOperator('POST', `/v1/operator/meters/${c.meterId}/withdraw`, operator.token, { reason: 'stolen' });
    expect([notEmpty.status, notEmpty.json.error.code]).to.deep.equal([409, 'METER_NOT_EMPTY']);
    // every action is on the signed audit record of the module that ran it
    const audit = (await auditRecords(knex)).filter((r) => r.details.meterId === c.meterId);
    expect(audit.map((r) => r.kind)).to.deep.equal(['meter-suspended', 'meter-reactivated', 'meter-suspended']);
    expect(audit[1].reason).to.match(/^reactivated by operator Olga Operator \(op-[0-9a-f]{16}\): case 1-2/);
    expect(audit[2].reason).to.match(/^suspended by operator Olga Operator \(op-[0-9a-f]{16}\): reported stolen/);
    // an empty meter is withdrawn (closed)
    const empty = new RawClient(f.url);
    await empty.register(password);
    const closed = await asOperator('POST', `/v1/operator/meters/${empty.meterId}/withdraw`, operator.token, { reason: 'account closed' });
    expect([closed.status, closed.json.state]).to.deep.equal([200, 'closed']);
    expect((await knex('meters').where({ meter_id: empty.meterId }).first('state')).state).to.equal('closed');
    expect((await auditRecords(knex)).filter((r) => r.details.meterId === empty.meterId).map((r) => r.kind)).to.deep.equal(['meter-withdrawn']);
  });

  it('bad JSON, oversized bodies, wrong types and unknown fields get 4xx and change nothing', async () => {
    const c = new RawClient(f.url);
    await c.register(password);
    const before = await snapshotOf(f, c.meterId);
    const raw = (body: string, type = 'application/json') => fetch(`${f.url}/v1/balance`, { method: 'POST', headers: { 'content-type': type }, body });
    expect((await raw('{"meterId": ')).status).to.equal(400);
    expect((await raw(JSON.stringify({ pad: 'x'.repeat(200_000) }))).status).to.equal(413);
    expect((await raw('meterId=1', 'application/x-www-form-urlencoded')).status).to.equal(415);
    const wrongType = c.envelope('purchase', { amount: '5000', payment: { kind: 'card', token: 'tok_approve' } });
    const w = await c.call('POST', '/v1/purchases', wrongType, { 'Idempotency-Key': 'bad-1' });
    expect([w.status, w.json.error.code]).to.deep.equal([400, 'VALIDATION_FAILED']);
    const unknown = { ...c.envelope('balance', {}), admin: true };
    const u = await c.call('POST', '/v1/balance', unknown);
    expect([u.status, u.json.error.code]).to.deep.equal([400, 'VALIDATION_FAILED']);
    const noKey = await c.call('POST', '/v1/purchases', c.envelope('purchase', { amount: 1, payment: { kind: 'card', token: 'tok_approve' } }));
    expect([noKey.status, noKey.json.error.code]).to.deep.equal([400, 'IDEMPOTENCY_KEY_REQUIRED']);
    expect(await snapshotOf(f, c.meterId)).to.deep.equal(before);
  });

  it('no HMK, password, password secret or session key appears anywhere in the database', async () => {
    const c = new RawClient(f.url);
    await c.register(password);
    const sessionKey = randomBytes(32);
    const open = await c.op('/v1/sessions', 'session-open', { moduleSerial: c.moduleSerial, encryptedPasswordSecret: c.encrypt(passwordSecret(password, c.meterId)), encryptedSessionKey: c.encrypt(sessionKey) });
    expect(open.status).to.equal(200);
    const secrets = [c.hmk, passwordSecret(password, c.meterId), sessionKey, Buffer.from(password)];
    const needles = secrets.flatMap((b) => [b.toString('hex'), b.toString('base64')]);
    const k = f.service.db.knex;
    const tables = (await k.raw("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).rows.map((r: { tablename: string }) => r.tablename);
    let rows = 0;
    for (const t of tables) {
      const dump = (await k.raw(`SELECT t::text AS row FROM "${t}" t`)).rows as Array<{ row: string }>;
      rows += dump.length;
      for (const { row } of dump) for (const n of needles) expect(row.includes(n), `${t} holds a secret`).to.equal(false);
    }
    expect(rows).to.be.greaterThan(20);
    expect(JSON.stringify(open.json).includes(sessionKey.toString('base64'))).to.equal(false);
  });

  it('serves an OpenAPI document that matches the routes exactly', async () => {
    const doc = await (await fetch(`${f.url}/v1/openapi.json`)).json();
    expect(routesMissingFromSpec(f.server.app, doc)).to.deep.equal({ undocumented: [], unrouted: [] });
    expect(Object.keys(doc.paths)).to.include.members(['/v1/registrations', '/v1/indicia', '/v1/sessions/{sessionId}/heartbeat', '/v1/verify']);
  });

  it('reports module states and database in /v1/health', async () => {
    const h = await (await fetch(`${f.url}/v1/health`)).json();
    expect(h.database).to.equal('ok');
    expect(h.modules[0].state).to.be.oneOf(['Idle', 'User']);
  });
});
