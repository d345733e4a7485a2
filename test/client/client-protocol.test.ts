import { expect } from 'chai';
import {
  constants, createCipheriv, createHash, createHmac, generateKeyPairSync, KeyObject, privateDecrypt, randomBytes, sign, timingSafeEqual,
} from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '@vbi/client/bin/vbi';
import { ClientState } from '@vbi/client/client/client-state';
import { FetchFn } from '@vbi/client/client/http';
import { KeyFile } from '@vbi/client/client/key-file';
import { VbiClient } from '@vbi/client/client/vbi-client';
import { assembleIndicium, encodeIndiciumData } from '@vbi/core/indicium/layout';
import { buildCertificate } from '@vbi/server/pki/cert-builder';
import { basicConstraints, extKeyUsage, keyUsage } from '@vbi/core/pki/extensions';
import { buildName, NameFields } from '@vbi/core/pki/names';
import { OID } from '@vbi/core/pki/oids';
import { toPem } from '@vbi/core/pki/pem';
import {
  dynamicPasswordInput, OperationalRequest, OperationalResponse, Receipt, receiptSignedBytes, registrationChallengeBytes, requestMacInput,
  responseMacInput, Operation,
} from '@vbi/core/protocol/messages';
import { computePostage } from '@vbi/core/rates/postage';

/*
 * The SDK and the CLI against an in-memory service that follows docs/protocol.md in software
 * (node:crypto instead of a token, maps instead of PostgreSQL), so the client's side of every
 * message is exercised without the server. The real service is covered by server-protocol.test.ts.
 */

const ROOT_DAYS = 3650;

async function certificate(req: {
  subject: NameFields; issuer: NameFields; spki: Buffer; issuerKey: KeyObject; ca: boolean; eku?: string[];
}): Promise<Buffer> {
  const now = Date.now();
  return buildCertificate({
    serial: randomBytes(8).fill(0x11, 0, 1), issuer: buildName(req.issuer), subject: buildName(req.subject), spki: req.spki,
    notBefore: new Date(Math.floor(now / 1000) * 1000 - 300_000), notAfter: new Date(Math.floor(now / 1000) * 1000 + ROOT_DAYS * 86_400_000),
    extensions: [
      basicConstraints({ ca: req.ca }),
      keyUsage(req.ca ? ['keyCertSign', 'cRLSign'] : ['digitalSignature']),
      ...(req.eku ? [extKeyUsage(req.eku)] : []),
    ],
  }, { algorithm: 'ecdsa-sha256', sign: async (tbs) => sign('sha256', tbs, { key: req.issuerKey, dsaEncoding: 'der' }) });
}

const spkiOf = (k: KeyObject) => k.export({ type: 'spki', format: 'der' });
const ec = () => generateKeyPairSync('ec', { namedCurve: 'P-256' });

/** A root, an issuing CA and a module identity certificate, all in software. */
async function softwarePki(moduleSerial: string, identityPublic: KeyObject) {
  const root = ec();
  const issuing = ec();
  const rootName = { commonName: 'Test Postal Root' };
  const issuingName = { commonName: 'Test Issuing CA' };
  const rootDer = await certificate({ subject: rootName, issuer: rootName, spki: spkiOf(root.publicKey), issuerKey: root.privateKey, ca: true });
  const issuingDer = await certificate({ subject: issuingName, issuer: rootName, spki: spkiOf(issuing.publicKey), issuerKey: root.privateKey, ca: true });
  const module = (serial: string, key: KeyObject, ou = 'module-identity', eku: string[] = [OID.kpModuleIdentity]) => certificate({
    subject: { organizationalUnit: ou, commonName: serial }, issuer: issuingName, spki: spkiOf(key), issuerKey: issuing.privateKey, ca: false, eku,
  });
  const identityDer = await module(moduleSerial, identityPublic);
  return { rootPem: toPem('CERTIFICATE', rootDer), issuingPem: toPem('CERTIFICATE', issuingDer), identityPem: toPem('CERTIFICATE', identityDer), module };
}

class Refusal extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly details?: Record<string, unknown>) {
    super(message);
  }
}

interface Session { key: Buffer; counter: number; open: boolean }

/** The service side of docs/protocol.md in software, behind an injectable fetch. */
class FakeService {
  readonly meterId = 'M-FAKE-1';
  readonly moduleSerial = 'FAKEMODULE01';
  readonly transport = generateKeyPairSync('rsa', { modulusLength: 2048 });
  readonly identity = ec();
  readonly indiciumKey = ec();
  pki!: Awaited<ReturnType<typeof softwarePki>>;
  extraModules: Array<{ serial: string; transportKey: string; oaepHash: 'sha256'; certificateChain: string[] }> = [];
  hmk?: Buffer;
  pwSecret?: Buffer;
  challenge = Buffer.alloc(0);
  asc = 0;
  desc = 0;
  sequence = 0;
  recordCounter = 0;
  receiptSigner: { serial: string; key: KeyObject } | undefined;
  sessions = new Map<string, Session>();
  payments = new Map<number, { amount: number; status: 'pending' | 'applied' }>();
  idempotent = new Map<string, { hash: string; status: number; body: unknown }>();
  charges = 0;
  calls: string[] = [];
  // knobs for the tests
  signChallengeOver: string | undefined;
  tamperResponseMac = false;
  loseNextAnswer = false;
  endSessionAfterItems: number | undefined;

  async init(): Promise<this> {
    this.pki = await softwarePki(this.moduleSerial, this.identity.publicKey);
    return this;
  }

  entry() {
    return {
      serial: this.moduleSerial, transportKey: spkiOf(this.transport.publicKey).toString('base64'), oaepHash: 'sha256' as const,
      certificateChain: [this.pki.identityPem, this.pki.issuingPem],
    };
  }

  fetch: FetchFn = async (url, init) => {
    const path = new URL(url).pathname;
    const method = String(init.method);
    const headers = init.headers as Record<string, string>;
    const body = init.body === undefined ? undefined : JSON.parse(String(init.body));
    this.calls.push(`${method} ${path}`);
    const key = headers['idempotency-key'];
    let status: number;
    let answer: unknown;
    const hash = createHash('sha256').update(`${path}\n${String(init.body)}`).digest('hex');
    const stored = key !== undefined ? this.idempotent.get(key) : undefined;
    if (stored && stored.hash === hash) {
      ({ status, body: answer } = stored);
    } else {
      try {
        ({ status, body: answer } = { status: 200, ...(await this.route(method, path, body)) });
      } catch (e) {
        if (!(e instanceof Refusal)) throw e;
        status = e.status;
        answer = { error: { code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}) } };
      }
      if (key !== undefined && status < 500) this.idempotent.set(key, { hash, status, body: answer });
    }
    if (this.loseNextAnswer) {
      this.loseNextAnswer = false;
      throw Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNRESET' } });
    }
    return new Response(JSON.stringify(answer), { status, headers: { 'content-type': 'application/json' } });
  };

  private async route(method: string, path: string, b: any): Promise<{ status?: number; body: unknown }> {
    let m: RegExpExecArray | null;
    if (method === 'GET' && path === '/v1/modules') return { body: { modules: [this.entry(), ...this.extraModules] } };
    if (path === '/v1/registrations') return { status: 201, body: { registrationId: 7, accountId: 3, meterId: this.meterId, modules: [this.entry()] } };
    if ((m = /^\/v1\/registrations\/([^/]+)\/challenge$/.exec(path))) {
      const e = this.entry();
      const signed = registrationChallengeBytes({ meterId: m[1], clientNonce: this.signChallengeOver ?? b.clientNonce, transportKeySpki: e.transportKey });
      return { body: { ...e, moduleSerial: e.serial, signature: sign('sha256', signed, { key: this.identity.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64') } };
    }
    if (/^\/v1\/registrations\/[^/]+\/complete$/.test(path)) {
      if (this.hmk) throw new Refusal(409, 'ALREADY_REGISTERED', 'meter is already registered');
      this.hmk = this.unwrap(b.encryptedHmk);
      this.pwSecret = this.unwrap(b.encryptedPasswordSecret);
      this.challenge = randomBytes(16);
      return { body: { challenge: this.challenge.toString('base64'), hmkProof: createHmac('sha256', this.hmk).update(this.challenge).digest('base64'), registers: { ascending: 0, descending: 0 } } };
    }
    if (path === '/v1/balance') return { body: this.operational(b, 'balance', () => ({ result: this.balance() })) };
    if (path === '/v1/history') return { body: this.operational(b, 'history', () => ({ result: { entries: [] } })) };
    if (path === '/v1/purchases') {
      return {
        body: this.operational(b, 'purchase', () => {
          const { amount, payment } = b.body;
          if (payment.token === 'tok_decline') throw new Refusal(402, 'PAYMENT_DECLINED', 'the payment was declined');
          const paymentId = this.payments.size + 1;
          this.charges++;
          if (payment.token === 'tok_pending') {
            this.payments.set(paymentId, { amount, status: 'pending' });
            return { result: { paymentId, status: 'pending', amount } };
          }
          this.payments.set(paymentId, { amount, status: 'applied' });
          this.asc += 0;
          this.desc += amount;
          return { amount, result: { paymentId, status: 'approved', amount } };
        }),
      };
    }
    if ((m = /^\/v1\/purchases\/(\d+)\/settle$/.exec(path))) {
      return {
        body: this.operational(b, 'purchase', () => {
          const p = this.payments.get(Number(m![1]));
          if (!p || p.status !== 'pending' || b.body.paymentId !== Number(m![1])) throw new Refusal(400, 'BAD_REQUEST', 'no pending payment');
          p.status = 'applied';
          this.desc += p.amount;
          return { amount: p.amount, result: { paymentId: b.body.paymentId, status: 'approved', amount: p.amount } };
        }),
      };
    }
    if (path === '/v1/refunds') {
      return {
        body: this.operational(b, 'refund', () => {
          const refunded = b.body.kind === 'full' ? this.desc : b.body.amount;
          this.desc -= refunded;
          return { amount: refunded, result: { kind: b.body.kind, refunded } };
        }),
      };
    }
    if (path === '/v1/sessions') {
      return {
        body: this.operational(b, 'session-open', () => {
          if (b.body.moduleSerial !== this.moduleSerial) throw new Refusal(503, 'NO_MODULE', 'no such module');
          const pw = this.unwrap(b.body.encryptedPasswordSecret);
          if (!this.pwSecret || !timingSafeEqual(pw, this.pwSecret)) throw new Refusal(401, 'WRONG_PASSWORD', 'password does not match');
          const sessionId = randomBytes(16).toString('hex');
          this.sessions.set(sessionId, { key: this.unwrap(b.body.encryptedSessionKey), counter: 0, open: true });
          return { result: { sessionId, heartbeatIntervalMs: 10_000, timeoutMs: 30_000 } };
        }),
      };
    }
    if ((m = /^\/v1\/sessions\/([0-9a-f]{32})\/heartbeat$/.exec(path))) {
      const s = this.live(m[1]);
      if (b.counter <= s.counter) throw new Refusal(409, 'STALE_CHALLENGE', `counter ${b.counter} is not above ${s.counter}`);
      const dp = createHmac('sha256', this.hmk!).update(dynamicPasswordInput({ meterId: b.meterId, sessionId: m[1], counter: b.counter, clientTime: b.clientTime, purpose: 'heartbeat' })).digest('base64');
      if (dp !== b.dynamicPassword) {
        s.open = false;
        throw new Refusal(401, 'BAD_DYNAMIC_PASSWORD', 'dynamic password does not verify');
      }
      s.counter = b.counter;
      return { body: { counter: b.counter, expiresAt: new Date(Date.now() + 30_000).toISOString() } };
    }
    if ((m = /^\/v1\/sessions\/([0-9a-f]{32})\/close$/.exec(path))) {
      const id = m[1];
      return {
        body: this.operational(b, 'session-close', () => {
          this.live(id).open = false;
          return { result: { sessionId: id, closed: true } };
        }),
      };
    }
    if (path === '/v1/indicia') return { body: this.print(b) };
    if (path === '/v1/verify') return { body: { result: 'VALID', reason: 'ok', fields: { meterId: this.meterId, sequence: 1, postage: 680, dateOfMailing: '2026-01-01', originZip: '20260', destinationZip: '' } } };
    throw new Refusal(404, 'NOT_FOUND', `${method} ${path}`);
  }

  private balance() {
    return { ascending: this.asc, descending: this.desc, refundRegister: 0, state: 'active' };
  }

  private unwrap(b64: string): Buffer {
    return privateDecrypt({ key: this.transport.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, Buffer.from(b64, 'base64'));
  }

  private live(sessionId: string): Session {
    const s = this.sessions.get(sessionId);
    if (!s) throw new Refusal(404, 'SESSION_NOT_FOUND', 'no such session');
    if (!s.open) throw new Refusal(401, 'SESSION_ENDED', 'session ended');
    return s;
  }

  private receipt(op: Operation, amount: number): Receipt {
    const unsigned: Omit<Receipt, 'signature'> = {
      meterId: this.meterId, op, amount, ascendingRegister: this.asc, descendingRegister: this.desc, sequence: ++this.recordCounter,
      time: new Date().toISOString(), moduleSerial: this.receiptSigner?.serial ?? this.moduleSerial, checkpointSeq: this.recordCounter,
    };
    const key = this.receiptSigner?.key ?? this.identity.privateKey;
    return { ...unsigned, signature: sign('sha256', receiptSignedBytes(unsigned), { key, dsaEncoding: 'ieee-p1363' }).toString('base64') };
  }

  /** WO 01/29778 FIG. 7: MAC, challenge, registers; the operation; a new challenge, receipt and MAC. */
  private operational(env: OperationalRequest, op: Operation, run: () => { amount?: number; result: Record<string, unknown> }): OperationalResponse {
    if (!this.hmk) throw new Refusal(409, 'NOT_REGISTERED', 'not registered');
    const { mac, ...rest } = env;
    const expected = createHmac('sha256', this.hmk).update(requestMacInput(rest)).digest('base64');
    if (mac !== expected || env.op !== op) throw new Refusal(401, 'BAD_MAC', 'request HMAC does not verify');
    if (env.challenge !== this.challenge.toString('base64')) throw new Refusal(409, 'STALE_CHALLENGE', 'stale challenge');
    if (env.registers.ascending !== this.asc || env.registers.descending !== this.desc) {
      throw new Refusal(409, 'REGISTER_MISMATCH', "the client's register copy differs from the meter's", { ascendingRegister: this.asc, descendingRegister: this.desc });
    }
    const out = run();
    this.challenge = randomBytes(16);
    const unsigned: Omit<OperationalResponse, 'mac'> = {
      meterId: this.meterId, op, challenge: this.challenge.toString('base64'), registers: { ascending: this.asc, descending: this.desc },
      result: out.result, receipt: this.receipt(op, out.amount ?? 0),
    };
    let responseMac = createHmac('sha256', this.hmk).update(responseMacInput(unsigned)).digest('base64');
    if (this.tamperResponseMac) responseMac = createHmac('sha256', randomBytes(32)).update('x').digest('base64');
    return { ...unsigned, mac: responseMac };
  }

  private print(env: OperationalRequest<{ sessionId: string; items: any[] }>) {
    const { sessionId, items } = env.body;
    const authorization = this.operational(env as OperationalRequest, 'print', () => {
      this.live(sessionId);
      return { result: { batchId: randomBytes(8).toString('hex'), items: items.length } };
    });
    const session = this.live(sessionId);
    const out: unknown[] = [];
    let ended: string | undefined;
    items.forEach((it, index) => {
      if (this.endSessionAfterItems !== undefined && index >= this.endSessionAfterItems) session.open = false;
      if (ended || !session.open) {
        ended = 'SESSION_ENDED';
        out.push({ index, status: 'voided', reason: ended });
        return;
      }
      const dp = createHmac('sha256', this.hmk!).update(dynamicPasswordInput({
        meterId: this.meterId, sessionId, counter: it.counter, clientTime: it.clientTime, purpose: 'print', destinationZip: it.destinationZip, postage: it.postage,
      })).digest('base64');
      if (dp !== it.dynamicPassword || it.counter <= session.counter) throw new Refusal(401, 'BAD_DYNAMIC_PASSWORD', `item ${index}`);
      const quote = it.rate ? computePostage({ ...it.rate }) : undefined;
      if (quote && quote.postage !== it.postage) {
        out.push({ index, status: 'failed', reason: 'POSTAGE_MISMATCH' });
        return;
      }
      if (this.desc < it.postage) {
        out.push({ index, status: 'failed', reason: 'INSUFFICIENT_FUNDS' });
        return;
      }
      session.counter = it.counter;
      this.asc += it.postage;
      this.desc -= it.postage;
      const data = encodeIndiciumData({
        algorithm: 'ec-p256', itemType: it.itemType, certSerial: '0a1b2c3d4e5f6071', meterId: this.meterId, ascendingRegister: this.asc,
        descendingRegister: this.desc, postage: it.postage, dateOfMailing: it.dateOfMailing, originZip: '20260', destinationZip: it.destinationZip,
        rateCategory: quote?.rateCategory ?? 'FIX', softwareId: 'VBI01', sequence: ++this.sequence, rateTableId: quote?.rateTableId ?? 0, rateTableVersion: quote?.rateTableVersion ?? 0,
      });
      const indicium = assembleIndicium(data, sign('sha256', data, { key: this.indiciumKey.privateKey, dsaEncoding: 'ieee-p1363' }));
      const iv = randomBytes(12);
      const c = createCipheriv('aes-256-gcm', session.key, iv);
      c.setAAD(Buffer.from(`VBI-INDICIUM\n${sessionId}\n${it.counter}`, 'utf8'));
      const encryptedIndicium = Buffer.concat([iv, c.update(indicium), c.final(), c.getAuthTag()]).toString('base64');
      out.push({ index, status: 'printed', indiciumId: 100 + this.sequence, encryptedIndicium, receipt: this.receipt('print', it.postage) });
    });
    return { authorization, items: out, registers: { ascending: this.asc, descending: this.desc } };
  }
}

async function rejection(p: Promise<unknown>): Promise<Error & { code?: string; details?: Record<string, unknown> }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

describe('client SDK against an in-memory protocol service', function () {
  this.timeout(60_000);
  let dir: string;
  let svc: FakeService;
  const password = 'correct horse battery staple';
  const registration = () => ({
    baseUrl: 'http://meter.test', rootCertPem: svc.pki.rootPem, name: 'Acme Mail Room', licensingZip: '20260',
    returnAddress: ['Acme', '1 Main St', 'Washington DC 20260'], password, keyFilePath: join(dir, 'key.json'),
    fetch: svc.fetch, http: { sleep: async () => undefined },
  });
  const open = () => VbiClient.open({ keyFilePath: join(dir, 'key.json'), password, fetch: svc.fetch, http: { sleep: async () => undefined } });
  const saved = async () => (await KeyFile.open<ClientState>({ path: join(dir, 'key.json'), password })).state;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vbi-client-'));
    svc = await new FakeService().init();
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('registers: verifies the module, hands over HMK and password secret, checks hmkProof, writes the key file', async () => {
    const client = await VbiClient.register(registration());
    expect(client.meterId).to.equal('M-FAKE-1');
    expect(svc.calls).to.deep.equal(['POST /v1/registrations', 'POST /v1/registrations/M-FAKE-1/challenge', 'POST /v1/registrations/M-FAKE-1/complete']);
    const s = await saved();
    expect(s).to.deep.include({ status: 'active', meterId: 'M-FAKE-1', moduleSerial: svc.moduleSerial, registers: { ascending: 0, descending: 0 }, serverUrl: 'http://meter.test' });
    expect(Buffer.from(s.hmk, 'base64').equals(svc.hmk!)).to.equal(true);
    expect(s.challenge).to.equal(svc.challenge.toString('base64'));
    expect(s.defaults).to.deep.equal({ name: 'Acme Mail Room', licensingZip: '20260', returnAddress: ['Acme', '1 Main St', 'Washington DC 20260'], labelSize: 'label-4x6', mailClass: 'first-class-letter' });
    if (process.platform !== 'win32') expect(statSync(join(dir, 'key.json')).mode & 0o777).to.equal(0o600);
    // a second registration never replaces the key file, and sends nothing
    svc.calls = [];
    expect((await rejection(VbiClient.register(registration()))).code).to.equal('BAD_REQUEST');
    expect(svc.calls).to.deep.equal([]);
  });

  it('refuses a module that chains to another root, a wrong profile, or did not sign our nonce; no key file is left', async () => {
    const other = await softwarePki(svc.moduleSerial, svc.identity.publicKey);
    expect((await rejection(VbiClient.register({ ...registration(), rootCertPem: other.rootPem }))).code).to.equal('CERT_INVALID');
    expect(existsSync(join(dir, 'key.json'))).to.equal(false);

    svc.pki.identityPem = toPem('CERTIFICATE', await svc.pki.module(svc.moduleSerial, svc.identity.publicKey, 'indicium', [OID.kpIndicium]));
    expect((await rejection(VbiClient.register(registration()))).message).to.match(/module-identity/);

    svc.pki.identityPem = toPem('CERTIFICATE', await svc.pki.module('ANOTHER', svc.identity.publicKey));
    expect((await rejection(VbiClient.register(registration()))).message).to.match(/expected 'module-identity\/FAKEMODULE01'/);

    svc = await new FakeService().init();
    svc.signChallengeOver = randomBytes(32).toString('base64');
    const e = await rejection(VbiClient.register(registration()));
    expect([e.code, e.message]).to.deep.equal(['CERT_INVALID', `module ${svc.moduleSerial} did not sign our registration challenge with its identity key`]);
    expect(svc.hmk, 'no secret was sent').to.equal(undefined);
    expect(existsSync(join(dir, 'key.json'))).to.equal(false);
  });

  it('operational calls: envelope accepted by the module, new challenge and registers saved, receipt checked', async () => {
    await VbiClient.register(registration());
    const client = await open();
    const bought = await client.buy({ amount: 20_000, payment: { kind: 'card', token: 'tok_approve' } });
    expect(bought).to.include({ paymentId: 1, status: 'approved', amount: 20_000 });
    expect(bought.receipt).to.include({ op: 'purchase', amount: 20_000, descendingRegister: 20_000 });
    expect((await saved()).registers).to.deep.equal({ ascending: 0, descending: 20_000 });
    expect((await saved()).challenge).to.equal(svc.challenge.toString('base64'));
    expect(await client.balance()).to.deep.equal({ ascending: 0, descending: 20_000, refundRegister: 0, state: 'active' });
    expect(await client.history(5)).to.deep.equal([]);
    const refund = await client.refund({ kind: 'partial', amount: 500, reason: 'spoiled envelope' });
    expect(refund.refunded).to.equal(500);
    expect(client.registers).to.deep.equal({ ascending: 0, descending: 19_500 });
    // a pending check, then settled
    const check = await client.buy({ amount: 1_000, payment: { kind: 'check', token: 'tok_pending' } });
    expect(check.status).to.equal('pending');
    expect((await client.settle(check.paymentId)).status).to.equal('approved');
    expect(client.registers.descending).to.equal(20_500);
    // the challenge survives a new process
    expect(await (await open()).balance()).to.include({ descending: 20_500 });
  });

  it('a purchase whose answer is lost is retried with the same Idempotency-Key: charged once', async () => {
    await VbiClient.register(registration());
    const client = await open();
    svc.loseNextAnswer = true;
    const r = await client.buy({ amount: 5_000, payment: { kind: 'card', token: 'tok_approve' } });
    expect(r.status).to.equal('approved');
    expect(svc.charges).to.equal(1);
    expect(svc.calls.filter((c) => c === 'POST /v1/purchases')).to.have.length(2);
    expect(await client.balance()).to.include({ descending: 5_000 });
  });

  it('a response with a bad MAC is refused and nothing is saved; REGISTER_MISMATCH is surfaced, not adopted', async () => {
    await VbiClient.register(registration());
    const client = await open();
    const before = await saved();
    svc.tamperResponseMac = true;
    expect((await rejection(client.balance())).code).to.equal('BAD_MAC');
    expect(await saved()).to.deep.equal(before);

    svc = await new FakeService().init();
    rmSync(join(dir, 'key.json'));
    await VbiClient.register(registration());
    const c2 = await open();
    svc.desc = 7_000; // the meter moved without this client (or the key file was restored from a backup)
    const e = await rejection(c2.balance());
    expect(e.code).to.equal('REGISTER_MISMATCH');
    expect(e.details).to.deep.equal({ ascendingRegister: 0, descendingRegister: 7_000 });
    expect(c2.registers).to.deep.equal({ ascending: 0, descending: 0 });
    expect((await saved()).registers).to.deep.equal({ ascending: 0, descending: 0 });
    expect((await rejection(c2.balance())).code, 'still refused').to.equal('REGISTER_MISMATCH');
  });

  it('wrong key file password: WRONG_PASSWORD; a password the meter does not know fails at session open', async () => {
    await VbiClient.register(registration());
    expect((await rejection(VbiClient.open({ keyFilePath: join(dir, 'key.json'), password: 'nope', fetch: svc.fetch }))).code).to.equal('WRONG_PASSWORD');
    svc.pwSecret = randomBytes(32);
    const client = await open();
    expect((await rejection(client.openSession({ heartbeats: false }))).code).to.equal('WRONG_PASSWORD');
  });

  it('a session: heartbeats and print items share one strictly increasing counter; indicia decrypt and match', async () => {
    await VbiClient.register(registration());
    const client = await open();
    await client.buy({ amount: 20_000, payment: { kind: 'card', token: 'tok_approve' } });
    const session = await client.openSession({ heartbeats: false });
    await client.heartbeat();
    expect(svc.sessions.get(session.sessionId)!.counter).to.equal(1);
    const progress: number[] = [];
    const quote = computePostage({ mailClass: 'first-class-letter', weightOz: 1 });
    const out = await client.print([
      { destinationZip: '205000001', rate: { mailClass: 'first-class-letter', weightOz: 1 } },
      { destinationZip: '10001', postage: 1_234 },
      { destinationZip: '94105', rate: { mailClass: 'first-class-letter', weightOz: 2 } },
    ], { onProgress: (p) => void progress.push(p.done) });
    expect(progress).to.deep.equal([1, 2, 3]);
    expect(out).to.include({ printed: 3, voided: 0, failed: 0, unverified: 0 });
    expect(out.items.map((i) => i.item.counter)).to.deep.equal([2, 3, 4]);
    expect(out.items[0].decoded!.fields).to.include({ postage: quote.postage, destinationZip: '205000001', rateCategory: quote.rateCategory, meterId: 'M-FAKE-1' });
    expect(out.items[1].decoded!.fields).to.include({ postage: 1_234, rateCategory: 'FIX' });
    const spent = out.items.reduce((n, i) => n + i.item.postage, 0);
    expect(client.registers).to.deep.equal({ ascending: spent, descending: 20_000 - spent });
    expect((await saved()).registers).to.deep.equal(client.registers);
    await client.heartbeat();
    expect(svc.sessions.get(session.sessionId)!.counter).to.equal(5);
    await client.closeSession();
    expect(svc.sessions.get(session.sessionId)!.open).to.equal(false);
    expect(client.session).to.equal(undefined);
    expect((await rejection(client.print([{ destinationZip: '20500', postage: 1 }]))).code).to.equal('SESSION_NOT_FOUND');
  });

  it('the timer sends heartbeats every heartbeatIntervalMs; stopHeartbeats stops them', async () => {
    await VbiClient.register(registration());
    const client = await open();
    const session = await client.openSession({ heartbeats: false });
    const fast = Object.assign(session, { heartbeatIntervalMs: 20 });
    fast.startHeartbeats();
    await new Promise((r) => setTimeout(r, 150));
    client.stopHeartbeats();
    const beats = svc.calls.filter((c) => c.endsWith('/heartbeat')).length;
    expect(beats).to.be.greaterThan(2);
    await new Promise((r) => setTimeout(r, 80));
    expect(svc.calls.filter((c) => c.endsWith('/heartbeat')).length).to.equal(beats);
    expect(svc.sessions.get(session.sessionId)!.counter).to.equal(session.lastCounter);
  });

  it('items after the session ends are voided and not debited; refused items are failed; registers follow the signed receipts', async () => {
    await VbiClient.register(registration());
    const client = await open();
    await client.buy({ amount: 2_000, payment: { kind: 'card', token: 'tok_approve' } });
    await client.openSession({ heartbeats: false });
    const out = await client.print([
      { destinationZip: '20500', postage: 1_500 },
      { destinationZip: '20500', postage: 1_000 },
      { destinationZip: '20500', postage: 100 },
    ]);
    expect(out.items.map((i) => [i.status, i.reason ?? null])).to.deep.equal([['printed', null], ['failed', 'INSUFFICIENT_FUNDS'], ['printed', null]]);
    svc.endSessionAfterItems = 1;
    const second = await client.print([{ destinationZip: '20500', postage: 100 }, { destinationZip: '20500', postage: 100 }]);
    expect(second.items.map((i) => i.status)).to.deep.equal(['printed', 'voided']);
    expect(client.registers).to.deep.equal({ ascending: 1_700, descending: 300 });
    expect(await client.balance()).to.include({ ascending: 1_700, descending: 300 });
  });

  it('learns a module added after registration from /v1/modules when its receipt arrives; refuses one the root does not vouch for', async () => {
    await VbiClient.register(registration());
    const client = await open();
    const second = ec();
    svc.extraModules = [{ serial: 'FAKEMODULE02', transportKey: svc.entry().transportKey, oaepHash: 'sha256', certificateChain: [toPem('CERTIFICATE', await svc.pki.module('FAKEMODULE02', second.publicKey)), svc.pki.issuingPem] }];
    svc.receiptSigner = { serial: 'FAKEMODULE02', key: second.privateKey };
    expect(await client.balance()).to.include({ state: 'active' });
    expect((await saved()).modules.map((m) => m.serial)).to.deep.equal([svc.moduleSerial, 'FAKEMODULE02']);

    const rogue = ec();
    svc.receiptSigner = { serial: 'ROGUE', key: rogue.privateKey };
    svc.extraModules.push({ serial: 'ROGUE', transportKey: svc.entry().transportKey, oaepHash: 'sha256', certificateChain: [toPem('CERTIFICATE', await (await softwarePki('ROGUE', rogue.publicKey)).module('ROGUE', rogue.publicKey))] });
    expect((await rejection(client.balance())).code).to.equal('CERT_INVALID');
    // the MAC was good, so the new challenge was kept: the client is not locked out
    svc.receiptSigner = undefined;
    expect(await client.balance()).to.include({ state: 'active' });
  });
});

describe('vbi CLI against an in-memory protocol service', function () {
  this.timeout(60_000);
  let dir: string;
  let svc: FakeService;
  let out: string;
  let err: string;
  const run = (...argv: string[]) => {
    out = '';
    err = '';
    return runCli(argv, {
      stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) },
      env: { VBI_PASSWORD: 'correct horse battery staple', VBI_KEY_FILE: join(dir, 'key.json'), VBI_SERVER: 'http://meter.test' },
      cwd: dir, fetch: svc.fetch,
    });
  };

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vbi-cli-'));
    svc = await new FakeService().init();
    writeFileSync(join(dir, 'root.pem'), svc.pki.rootPem);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  async function registered(): Promise<void> {
    expect(await run('register', '--name', 'Acme', '--zip', '20260', '--return-address', 'Acme|1 Main St|Washington DC 20260', '--root', 'root.pem'), err).to.equal(0);
  }

  it('usage errors exit 2; service errors print CODE: message and exit 1', async () => {
    expect(await run()).to.equal(2);
    expect(out).to.include('usage: vbi <command>');
    expect(await run('--help')).to.equal(0);
    expect(await run('frobnicate')).to.equal(2);
    expect(err).to.match(/unknown command 'frobnicate'/);
    expect(await run('balance', '--bogus')).to.equal(2);
    expect(await run('buy', '20.0001')).to.equal(2);
    expect(err).to.match(/more than 3 decimals/);
    expect(await run('buy', '20.00', '--card', 'a', '--check', 'b')).to.equal(2);
    expect(await run('refund', '--partial', '1.00')).to.equal(2);
    expect(await run('register', '--name', 'A', '--zip', '123', '--return-address', 'x')).to.equal(2);
    expect(await run('balance')).to.equal(1);
    expect(err).to.match(/^NOT_REGISTERED: no key file at /);
  });

  it('register, buy, balance, refund, history; REGISTER_MISMATCH exits 1 with the details', async () => {
    await registered();
    expect(out).to.match(/registered meter M-FAKE-1 \(account 3\) with module FAKEMODULE01/);
    expect(await run('buy', '20.00'), err).to.equal(0);
    expect(out).to.match(/payment 1 approved: \$20\.00 \(20000 mills\) added/);
    expect(await run('buy', '1.5', '--check', 'tok_pending')).to.equal(0);
    expect(out).to.match(/payment 2 pending: run 'vbi settle 2'/);
    expect(await run('settle', '2')).to.equal(0);
    expect(await run('refund', '--partial', '0.50', '--reason', 'spoiled')).to.equal(0);
    expect(out).to.match(/refunded \$0\.50 .* available now: \$21\.00/);
    expect(await run('balance')).to.equal(0);
    expect(out).to.include('available (descending register): $21.00 (21000 mills)');
    expect(await run('history', '--limit', '3')).to.equal(0);
    expect(await run('login')).to.equal(0);
    expect(out).to.match(/password accepted by the meter/);
    svc.desc += 1;
    expect(await run('balance')).to.equal(1);
    expect(err).to.match(/^REGISTER_MISMATCH: /);
    expect(err).to.include('details: {"ascendingRegister":0,"descendingRegister":21001}');
  });

  it('print: one label (SVG and the default PDF), priced from the rate table', async () => {
    await registered();
    await run('buy', '20.00');
    expect(await run('print', '--to', 'Jane Doe|1 Elm St|Springfield IL 62701', '--zip', '627010001', '--weight', '1', '--out', 'label.svg'), err).to.equal(0);
    const quote = computePostage({ mailClass: 'first-class-letter', weightOz: 1 });
    expect(out).to.match(new RegExp(`printed \\$[0-9.]+ FCL to 627010001 .*label\\.svg`));
    const svg = readFileSync(join(dir, 'label.svg'), 'utf8');
    expect(svg).to.include('<svg').and.include('Jane Doe');
    expect(await run('print', '--to', 'Jane Doe|1 Elm St', '--zip', '62701', '--weight', '1', '--out', 'label.svg')).to.equal(2);
    expect(err).to.match(/exists; refusing to overwrite/);
    expect(await run('print', '--to', 'Bob|2 Oak Ave', '--zip', '78701', '--postage', '1.00', '--size', '10')).to.equal(0);
    const pdf = readdirSync(dir).find((f) => /^label-M-FAKE-1-\d+\.pdf$/.test(f));
    expect(pdf).to.be.a('string');
    expect(readFileSync(join(dir, pdf!)).subarray(0, 5).toString()).to.equal('%PDF-');
    expect(svc.desc).to.equal(20_000 - quote.postage - 1_000);
    expect(await run('print', '--to', 'x'.repeat(41), '--zip', '78701', '--postage', '1.00')).to.equal(2);
    expect(svc.desc, 'nothing printed for a label that cannot be drawn').to.equal(20_000 - quote.postage - 1_000);
  });

  it('print-batch: progress on stderr, one label per printed record, a summary with printed/voided counts', async () => {
    await registered();
    await run('buy', '3.00');
    writeFileSync(join(dir, 'list.csv'), [
      'to,zip,weight,postage,file',
      '"Jane Doe|1 Elm St|Springfield IL 62701",627010001,1,,jane',
      '"Bob|2 Oak Ave|Austin TX 78701",78701,,1.00,',
      '"Big|3 Pine Rd|Boston MA 02108",02108,,5.00,',
      '"Ann|4 Birch Ln|Denver CO 80202",80202,,0.50,',
    ].join('\n'));
    const status = await run('print-batch', 'list.csv', '--out', 'labels', '--format', 'svg', '--chunk', '2');
    expect(status, err).to.equal(1);
    expect(readdirSync(join(dir, 'labels')).sort()).to.deep.equal(['0002.svg', '0004.svg', 'jane.svg']);
    expect(err).to.include('[');
    expect(err.trim().split('\n').filter((l) => l.startsWith('[')).length).to.be.greaterThan(3);
    expect(err).to.match(/record 3: failed \(INSUFFICIENT_FUNDS\), nothing debited/);
    expect(out).to.match(/printed 3, voided 1 of 4; labels in .*labels/);
    expect(svc.calls.filter((c) => c === 'POST /v1/indicia')).to.have.length(2);
    expect(svc.sessions.size).to.equal(1);
    expect([...svc.sessions.values()][0].open, 'session closed').to.equal(false);
    // nothing is overwritten on a second run
    expect(await run('print-batch', 'list.csv', '--out', 'labels', '--format', 'svg')).to.equal(2);
    expect(await run('print-batch', 'list.csv', '--out', 'labels2', '--format', 'gif')).to.equal(2);
  });

  it('verify --payload asks the service', async () => {
    expect(await run('verify', '--payload', randomBytes(20).toString('base64'))).to.equal(0);
    expect(out.split('\n')[0]).to.equal('VALID');
    expect(await run('verify')).to.equal(2);
  });
});
