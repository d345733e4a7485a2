import { testLibrary } from '../helpers/hsm';
import { expect } from 'chai';
import { request as httpRequest } from 'node:http';
import { constants, createPublicKey, publicEncrypt, randomBytes } from 'node:crypto';
import { ServerFixture, serverFixture } from '../helpers/server';
import { RawClient } from '../helpers/raw-client';
import { passwordSecret } from '@vbi/core/protocol/messages';
import { vbiError } from '@vbi/core/errors';
import { ledgerFixture } from '../helpers/ledger';
import { MailerService } from '@vbi/server/mailer/mailer-service';
import { SandboxPaymentProvider } from '@vbi/server/payments/sandbox-provider';

/**
 * Hostile input against the real server (SoftHSM2 token, PostgreSQL): requests an attacker on
 * the network can send without credentials, and malformed ones from a mailer. Each gets a 4xx
 * with a stable code and the documented error body, changes nothing, and no module leaves the
 * rotation; a token failure takes a module out only when its health check fails, and the module
 * comes back when the check passes again.
 */
async function rowsOf(f: ServerFixture, meterId: string): Promise<unknown> {
  const k = f.service.db.knex;
  return {
    meter: await k('meters').where({ meter_id: meterId }).first('package', 'record_counter'),
    // (MeterGen refills its pool in the background: only this meter's journal rows count)
    journal: (await k('journal').where({ meter_id: meterId }).count({ n: '*' }).first())?.n,
    payments: await k('payments').orderBy('payment_id').select('payment_id', 'status'),
    sessions: (await k('sessions').count({ n: '*' }).first())?.n,
    accounts: (await k('accounts').count({ n: '*' }).first())?.n,
    idempotency: (await k('idempotency_keys').count({ n: '*' }).first())?.n,
  };
}

/** A raw HTTP request (headers and body exactly as given). */
function raw(url: string, req: { method: string; path: string; headers?: Record<string, string>; body?: Buffer | string }): Promise<{ status: number; json: any }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const r = httpRequest({ host: u.hostname, port: u.port, method: req.method, path: req.path, headers: req.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown = null;
        try {
          json = text ? JSON.parse(text) : null;
        } catch {
          json = { unparsed: text };
        }
        resolve({ status: res.statusCode ?? 0, json });
      });
    });
    r.on('error', reject);
    if (req.body !== undefined) r.write(req.body);
    r.end();
  });
}

describe('hostile input over HTTP (real token and database)', function () {
  this.timeout(120_000);
  let f: ServerFixture;
  let c: RawClient;
  const password = 'correct horse battery staple';

  before(async () => {
    f = await serverFixture({ authRateLimit: { limit: 1000, windowMs: 60_000 } });
    c = new RawClient(f.url);
    await c.register(password);
  });
  after(() => f.close());

  const healthy = async () => {
    const h = await c.call('GET', '/v1/health');
    expect(h.status, JSON.stringify(h.json)).to.equal(200);
    for (const m of h.json.modules) {
      expect(m).to.include({ inRotation: true });
      // the start-up probe in summary only: no token details to anonymous callers
      expect(m.probe).to.deep.equal({ profile: testLibrary().profile.name, ok: true, failed: [] });
    }
  };
  const errorShape = (r: { status: number; json: any }, status: number, code: string) => {
    expect(r.status, JSON.stringify(r.json)).to.equal(status);
    expect(r.json.error.code).to.equal(code);
    expect(r.json.error.message).to.be.a('string');
    expect(JSON.stringify(r.json)).not.to.match(/CKR_|pkcs11|\.ts:|\.js:|\bat \w/);
  };

  it('an anonymous envelope with an empty or wrong MAC for a real meter: 4xx, nothing changes, the module stays in service', async () => {
    const before = await rowsOf(f, c.meterId);
    const env = c.envelope('balance', {});
    errorShape(await c.call('POST', '/v1/balance', { ...env, mac: '' }), 400, 'VALIDATION_FAILED');
    errorShape(await c.call('POST', '/v1/balance', { ...env, mac: randomBytes(16).toString('base64') }), 400, 'VALIDATION_FAILED');
    errorShape(await c.call('POST', '/v1/balance', { ...env, mac: randomBytes(32).toString('base64') }), 401, 'BAD_MAC');
    expect(await rowsOf(f, c.meterId)).to.deep.equal(before);
    await healthy();
    expect((await c.op('/v1/balance', 'balance', {})).status).to.equal(200);
  });

  it('registration completion: empty, short or garbage ciphertexts, no or a wrong token, a pool meter never handed out', async () => {
    const reg = await c.call('POST', '/v1/registrations', { name: 'Second Mailer', licensingZip: '20260', returnAddress: ['Second Mailer', '2 Test St'] });
    expect(reg.status).to.equal(201);
    const { meterId, registrationToken } = reg.json;
    const serial = reg.json.modules[0].serial;
    const key = createPublicKey({ key: Buffer.from(reg.json.modules[0].transportKey, 'base64'), format: 'der', type: 'spki' });
    const enc = (b: Buffer) => publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: testLibrary().profile.oaepHash }, b).toString('base64');
    const good = { moduleSerial: serial, registrationToken, encryptedHmk: enc(randomBytes(32)), encryptedPasswordSecret: enc(passwordSecret(password, meterId)) };
    const complete = (body: unknown, id = meterId) => c.call('POST', `/v1/registrations/${id}/complete`, body);
    const before = await rowsOf(f, meterId);
    errorShape(await complete({ ...good, encryptedHmk: '' }), 400, 'VALIDATION_FAILED');
    errorShape(await complete({ ...good, encryptedHmk: randomBytes(384).toString('base64') }), 400, 'CLIENT_SECRET_INVALID');
    errorShape(await complete({ ...good, encryptedHmk: randomBytes(300).toString('base64') }), 400, 'CLIENT_SECRET_INVALID');
    errorShape(await complete({ ...good, encryptedHmk: enc(randomBytes(16)) }), 400, 'CLIENT_SECRET_INVALID');
    errorShape(await complete({ ...good, registrationToken: randomBytes(16).toString('hex') }), 403, 'REGISTRATION_UNKNOWN');
    const { registrationToken: _t, ...noToken } = good;
    errorShape(await complete(noToken), 400, 'VALIDATION_FAILED');
    errorShape(await complete({ ...good, moduleSerial: 'NO-SUCH-MODULE' }), 400, 'UNKNOWN_MODULE');
    expect(await rowsOf(f, meterId)).to.deep.equal(before);
    // a certified meter still in the pool, never handed out by step 1a
    const pooled = await f.service.db.knex('meters').where({ state: 'unassigned' }).whereNotNull('cert_serial').first('meter_id');
    expect(pooled, 'a pooled meter').to.not.equal(undefined);
    errorShape(await complete(good, pooled.meter_id), 403, 'REGISTRATION_UNKNOWN');
    await healthy();
    // the rightful client completes, once
    expect((await complete(good)).status).to.equal(200);
    errorShape(await complete(good), 403, 'REGISTRATION_UNKNOWN');
  });

  it('a session opened with a 16-byte session key or a wrong-length ciphertext is refused and changes nothing', async () => {
    const key = createPublicKey({ key: c.transportKey, format: 'der', type: 'spki' });
    const enc = (b: Buffer) => publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: testLibrary().profile.oaepHash }, b).toString('base64');
    const pw = enc(passwordSecret(password, c.meterId));
    const before = await rowsOf(f, c.meterId);
    errorShape(await c.send('/v1/sessions', c.envelope('session-open', { moduleSerial: c.moduleSerial, encryptedPasswordSecret: pw, encryptedSessionKey: enc(randomBytes(16)) })), 400, 'CLIENT_SECRET_INVALID');
    errorShape(await c.send('/v1/sessions', c.envelope('session-open', { moduleSerial: c.moduleSerial, encryptedPasswordSecret: pw, encryptedSessionKey: randomBytes(256).toString('base64') })), 400, 'CLIENT_SECRET_INVALID');
    for (const n of [0, 24, 25, 31, 33]) {
      errorShape(await c.send('/v1/sessions', c.envelope('session-open', { moduleSerial: c.moduleSerial, encryptedPasswordSecret: pw, encryptedSessionKey: enc(randomBytes(n)) })), 400, 'CLIENT_SECRET_INVALID');
    }
    errorShape(await c.send('/v1/sessions', c.envelope('session-open', { moduleSerial: '', encryptedPasswordSecret: pw, encryptedSessionKey: enc(randomBytes(32)) })), 400, 'VALIDATION_FAILED');
    expect(await rowsOf(f, c.meterId)).to.deep.equal(before);
    await healthy();
    // the challenge was not used up: the next good request goes through
    const ok = await c.send('/v1/sessions', c.envelope('session-open', { moduleSerial: c.moduleSerial, encryptedPasswordSecret: pw, encryptedSessionKey: enc(randomBytes(32)) }));
    expect(ok.status, JSON.stringify(ok.json)).to.equal(200);
    // closing it under another session id in the path is refused; the session stays open
    const sessionId = ok.json.result.sessionId as string;
    errorShape(await c.call('POST', `/v1/sessions/${'0'.repeat(32)}/close`, c.envelope('session-close', { sessionId })), 400, 'VALIDATION_FAILED');
    expect((await f.service.db.knex('sessions').where({ session_id: sessionId }).first('state')).state).to.equal('open');
  });

  it('control characters and lone surrogates in any text field: 400 TEXT_INVALID, no account, no refund', async () => {
    const before = await rowsOf(f, c.meterId);
    for (const name of ['Evil\u0000Corp', 'Line\nBreak', 'Bad \ud800 surrogate', 'C1 \u0085 control']) {
      errorShape(await c.call('POST', '/v1/registrations', { name, licensingZip: '20260', returnAddress: ['x'] }), 400, 'TEXT_INVALID');
    }
    errorShape(await c.call('POST', '/v1/registrations', { name: 'Fine', licensingZip: '20260', returnAddress: ['1 Main St\u0000'] }), 400, 'TEXT_INVALID');
    errorShape(await c.send('/v1/refunds', c.envelope('refund', { kind: 'partial', amount: 1, reason: 'spoiled\u0000' })), 400, 'TEXT_INVALID');
    errorShape(await c.call('POST', '/v1/verify', { indicium: 'AAAA', location: 'dock\u0000 7' }), 400, 'TEXT_INVALID');
    // nesting deep enough to exhaust a recursive walk, well inside the body limit
    const deep = `{"name":${'['.repeat(20_000)}${']'.repeat(20_000)},"licensingZip":"20260","returnAddress":["x"]}`;
    errorShape(await raw(f.url, { method: 'POST', path: '/v1/registrations', headers: { 'content-type': 'application/json' }, body: deep }), 400, 'BAD_JSON');
    expect(await rowsOf(f, c.meterId)).to.deep.equal(before);
  });

  it('malformed percent-encoding, huge and non-numeric ids, path and body ids that differ: 400 with the error body', async () => {
    for (const path of ['/v1/registrations/%zz/challenge', '/v1/registrations/%FF/challenge', '/v1/registrations/%/complete', '/v1/purchases/%E0%A4%A/settle']) {
      const r = await raw(f.url, { method: 'POST', path, headers: { 'content-type': 'application/json' }, body: '{}' });
      errorShape(r, 400, r.json?.error?.code === 'VALIDATION_FAILED' ? 'VALIDATION_FAILED' : 'BAD_REQUEST');
    }
    const settle = (id: string, paymentId: unknown) => c.call('POST', `/v1/purchases/${id}/settle`, c.envelope('purchase', { paymentId }));
    errorShape(await settle('1e%2B23', 1), 400, 'VALIDATION_FAILED');
    errorShape(await settle('abc', 1), 400, 'VALIDATION_FAILED');
    errorShape(await raw(f.url, { method: 'POST', path: '/v1/purchases/1/settle', headers: { 'content-type': 'application/json' }, body: JSON.stringify(c.envelope('purchase', {})).replace('"body":{}', '"body":{"paymentId":1e+23}') }), 400, 'VALIDATION_FAILED');
    errorShape(await settle('1', 2), 400, 'VALIDATION_FAILED');
    errorShape(await c.call('POST', '/v1/corrections', c.envelope('correction', { sessionId: 'a'.repeat(32), originalIndiciumId: 1e23, item: {} })), 400, 'VALIDATION_FAILED');
    await healthy();
  });

  it('compressed bodies are refused (415), oversized bodies are 413 and oversized headers 431, all with the error body', async () => {
    for (const enc of ['gzip', 'br', 'deflate']) {
      errorShape(await raw(f.url, { method: 'POST', path: '/v1/balance', headers: { 'content-type': 'application/json', 'content-encoding': enc }, body: randomBytes(64) }), 415, 'CONTENT_ENCODING_UNSUPPORTED');
    }
    errorShape(await raw(f.url, { method: 'POST', path: '/v1/balance', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ pad: 'x'.repeat(70_000) }) }), 413, 'BODY_TOO_LARGE');
    errorShape(await raw(f.url, { method: 'GET', path: '/v1/health', headers: { 'x-big': 'y'.repeat(20_000) } }), 431, 'HEADERS_TOO_LARGE');
    await healthy();
  });

  it('settling a payment that is still being charged: a stranger gets 401, the owner a 400, never a 500', async () => {
    const k = f.service.db.knex;
    const [row] = await k('payments').insert({ meter_id: c.meterId, amount: 3_000, provider: 'sandbox', status: 'pending', method_kind: 'card' }).returning('payment_id');
    const id = row.payment_id as number;
    const forged = { ...c.envelope('purchase', { paymentId: id }), mac: randomBytes(32).toString('base64') };
    errorShape(await c.call('POST', `/v1/purchases/${id}/settle`, forged), 401, 'BAD_MAC');
    errorShape(await c.call('POST', `/v1/purchases/${id}/settle`, c.envelope('purchase', { paymentId: id })), 400, 'BAD_REQUEST');
    expect((await k('payments').where({ payment_id: id }).first('status')).status).to.equal('pending');
    await k('payments').where({ payment_id: id }).update({ status: 'declined' });
    await healthy();
  });

  it('idempotency keys older than the retention are purged, answered or left in progress; recent ones stay', async () => {
    const k = f.service.db.knex;
    const old = new Date(Date.now() - 31 * 86_400_000);
    const hash = Buffer.alloc(32, 1);
    await k('idempotency_keys').insert([
      { scope: 'PURGE-TEST', key: 'old-done', request_hash: hash, state: 'done', status: 200, response: {}, created_at: old },
      { scope: 'PURGE-TEST', key: 'old-running', request_hash: hash, state: 'in_progress', created_at: old },
      { scope: 'PURGE-TEST', key: 'new-done', request_hash: hash, state: 'done', status: 200, response: {} },
    ]);
    expect(await f.server.purgeIdempotencyKeys()).to.be.at.least(2);
    expect((await k('idempotency_keys').where({ scope: 'PURGE-TEST' }).orderBy('key').select('key')).map((r) => r.key)).to.deep.equal(['new-done']);
  });

  it("a stranger cannot reserve a mailer's idempotency key; the mailer's own request runs", async () => {
    const body = { amount: 1_000, payment: { kind: 'card', token: 'tok_approve' } };
    const forged = { ...c.envelope('purchase', body), mac: randomBytes(32).toString('base64') };
    errorShape(await c.call('POST', '/v1/purchases', forged, { 'Idempotency-Key': 'victim-key-1' }), 401, 'BAD_MAC');
    expect(await f.service.db.knex('idempotency_keys').where({ key: 'victim-key-1' }).first()).to.equal(undefined);
    const real = await c.op('/v1/purchases', 'purchase', body, { 'Idempotency-Key': 'victim-key-1' });
    expect(real.status, JSON.stringify(real.json)).to.equal(200);
  });

  it('a purchase the download would refuse is refused before the card is charged; a lost challenge race voids the charge', async () => {
    const k = f.service.db.knex;
    const authorized = () => f.payments.payments().length;
    const charged = authorized();
    errorShape(await c.op('/v1/purchases', 'purchase', { amount: 600_000_000, payment: { kind: 'card', token: 'tok_approve' } }, { 'Idempotency-Key': 'too-much' }), 409, 'MAX_DR_EXCEEDED');
    expect(authorized()).to.equal(charged);
    // two purchases racing on one challenge: one downloads, the other's charge is voided (or never made)
    const envs = ['race-a', 'race-b'].map(() => c.envelope('purchase', { amount: 2_000, payment: { kind: 'card', token: 'tok_approve' } }));
    const results = await Promise.all(envs.map((e, i) => c.call('POST', '/v1/purchases', e, { 'Idempotency-Key': `race-${i}` })));
    expect(results.map((r) => r.status).sort()).to.deep.equal([200, 409]);
    const won = results.find((r) => r.status === 200) as { json: any };
    c.challenge = won.json.challenge;
    c.registers = won.json.registers;
    const rows = await k('payments').where({ meter_id: c.meterId }).select('payment_id', 'status', 'provider_ref');
    expect(rows.filter((p) => p.status === 'approved' || p.status === 'pending')).to.deep.equal([]);
    for (const p of f.payments.payments().slice(charged)) {
      const row = rows.find((r) => r.provider_ref === p.providerRef);
      // applied: captured at the processor; voided: never captured (the mailer is not charged)
      expect((row?.status === 'applied' && p.captured === true) || (row?.status === 'voided' && p.voided === true && p.captured !== true), JSON.stringify({ p, row })).to.equal(true);
    }
  });

  it('a token error from a healthy module is the command\'s own failure; a failed health check takes the module out, and it comes back', async () => {
    const engine = f.service.engines[0];
    const failing = () => f.service.ledger.run({ meterId: c.meterId, type: 'inquiry', execute: async () => { throw vbiError('HSM_ERROR', 'C_Sign: CKR_FUNCTION_FAILED'); }, details: () => ({}) });
    const e1 = await failing().then(() => null, (e) => e);
    expect(e1?.code).to.equal('HSM_ERROR');
    await healthy();
    // the token now fails its health check (fault injected for this test only)
    const real = engine.hsm.healthCheck.bind(engine.hsm);
    (engine.hsm as { healthCheck: typeof real }).healthCheck = async () => ({ ok: false, reason: 'injected fault' });
    try {
      const e2 = await failing().then(() => null, (e) => e);
      expect(e2?.code).to.equal('NO_MODULE');
      const h = await c.call('GET', '/v1/health');
      expect(h.status).to.equal(503);
      expect(h.json.modules[0]).to.include({ inRotation: false });
      expect(await f.service.ledger.checkModules()).to.deep.equal([]);
    } finally {
      (engine.hsm as { healthCheck: typeof real }).healthCheck = real;
    }
    expect(await f.service.ledger.checkModules()).to.deep.equal([engine.hsm.serial]);
    await healthy();
    expect((await c.op('/v1/balance', 'balance', {})).status).to.equal(200);
  });
});

describe('a registration refused for want of a meter', function () {
  this.timeout(120_000);
  it('leaves no account behind', async () => {
    const f = await ledgerFixture();
    try {
      const mailer = new MailerService({ ledger: f.service.ledger, payments: new SandboxPaymentProvider(), oaepHash: testLibrary().profile.oaepHash, spoilageLimitBps: 100 });
      const count = async () => Number((await f.db.knex('accounts').count({ n: '*' }).first())?.n);
      const before = await count();
      const err = await mailer.register({ name: 'No Meter Left', licensingZip: '20260', returnAddress: ['x'] }).then(() => null, (e) => e);
      expect(err?.code).to.equal('NO_METER_AVAILABLE');
      expect(await count()).to.equal(before);
    } finally {
      await f.service.close();
    }
  });
});
