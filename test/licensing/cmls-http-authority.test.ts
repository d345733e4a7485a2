import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { CmlsHttpAuthority } from '@vbi/server/licensing/cmls-http-authority';
import { CMLS_TIMEOUT_DEFAULT_MS, cmlsHttpOptionsFromEnv } from '@vbi/server/config/cmls-settings';
import { LicenceApplication, LicenceRevocation, LicenceUnknownError, LicensingAuthority, LicensingLinkError } from '@vbi/server/licensing/licensing-authority';
import { isVbiError } from '@vbi/core/errors';
import { openPackage } from '@vbi/server/module/package-seal';
import { adapterOptions, cmlsPki, CmlsPki, Fault, TestCmlsServer } from '../helpers/cmls-server';
import { ServerFixture, serverFixture } from '../helpers/server';
import { RawClient } from '../helpers/raw-client';

const application = (requestId: number, over: Partial<LicenceApplication> = {}): LicenceApplication => ({
  requestId, meterId: `VBI-T${requestId}`, certSerial: '0a1b2c', accountName: 'Acme Mail Room', returnAddress: ['Acme Mail Room', '1 Main St', 'Washington DC 20260'],
  licensingZip: '20260', registeredAt: '2026-12-01T10:00:00.000Z', ...over,
});

/** The promise's rejection (fails the test if it resolves). */
async function rejection(p: Promise<unknown>): Promise<Error> {
  return p.then((v) => { throw new Error(`expected a rejection, got ${JSON.stringify(v)}`); }, (e: Error) => e);
}

/** A port on 127.0.0.1 nothing listens on (taken from the OS, then let go). */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as { port: number };
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

describe('CMLS HTTP adapter: the documented licensing API over mutual TLS', function () {
  this.timeout(60_000);
  let pki: CmlsPki;
  let cmls: TestCmlsServer;
  let adapter: CmlsHttpAuthority;

  before(async () => {
    pki = cmlsPki();
    cmls = await TestCmlsServer.start(pki);
    adapter = new CmlsHttpAuthority(adapterOptions(pki, cmls.url));
  });
  after(async () => {
    await cmls?.close();
  });
  beforeEach(() => {
    cmls.faults.length = 0;
  });

  it('approved (201), refused (200) and under review (202) map onto the decisions; the PUT carries the documented body, Idempotency-Key and the vendor certificate', async () => {
    expect(await adapter.submit(application(1))).to.deep.equal({ status: 'approved', licenceId: 'PA/20260/1' });
    expect(await adapter.submit(application(2, { licensingZip: '00000' }))).to.deep.equal({ status: 'refused', reason: 'ZIP_NOT_SERVED: no post office has this ZIP' });
    expect(await adapter.submit(application(3, { licensingZip: '99999' }))).to.deep.equal({ status: 'pending', authorityRef: 'CASE-3' });
    const first = cmls.received[0];
    expect(first).to.deep.include({ method: 'PUT', path: '/cmls/v1/vendors/VENDOR-7/licence-applications/1', idempotencyKey: 'VENDOR-7-1', clientCn: 'VENDOR-7' });
    expect(first.body).to.deep.equal({
      form: '3601-A',
      meter: { meterId: 'VBI-T1', indiciumCertificateSerial: '0a1b2c', vendorProduct: 'VBI1' },
      applicant: { name: 'Acme Mail Room', address: ['Acme Mail Room', '1 Main St', 'Washington DC 20260'] },
      licensingPostOffice: { zip: '20260' },
      registeredAt: '2026-12-01T10:00:00.000Z',
    });
  });

  it('asked again with the same request id: the same answer, no second application; another body under it is a 409, thrown (not a link failure)', async () => {
    const filed = cmls.applications.size;
    expect(await adapter.submit(application(1))).to.deep.equal({ status: 'approved', licenceId: 'PA/20260/1' });
    expect(await adapter.submit(application(3, { licensingZip: '99999' }))).to.deep.equal({ status: 'pending', authorityRef: 'CASE-3' });
    expect(cmls.applications.size).to.equal(filed);
    const conflict = await rejection(adapter.submit(application(1, { accountName: 'Someone Else' })));
    expect(conflict).not.to.be.instanceOf(LicensingLinkError);
    expect(conflict.message).to.equal('PUT /cmls/v1/vendors/VENDOR-7/licence-applications/1: HTTP 409: CONFLICT: another application under this request id');
    expect(cmls.applications.get('1')?.answer.body).to.deep.include({ licenceNumber: 'PA/20260/1' });
  });

  it('400, 401, 403 (and an unexpected status) are thrown with the authority\'s error; 5xx, 408 and 429 are link failures', async () => {
    for (const status of [400, 401, 403, 404, 302]) {
      cmls.faults.push({ kind: 'status', status, body: { error: { code: `E${status}`, message: 'bad\nthing' } } });
      const e = await rejection(adapter.submit(application(10)));
      expect(e, String(status)).not.to.be.instanceOf(LicensingLinkError);
      expect(e.message).to.equal(`PUT /cmls/v1/vendors/VENDOR-7/licence-applications/10: HTTP ${status}: E${status}: bad thing`);
    }
    for (const status of [500, 502, 503, 408, 429]) {
      cmls.faults.push({ kind: 'status', status });
      const e = await rejection(adapter.submit(application(10)));
      expect(e, String(status)).to.be.instanceOf(LicensingLinkError);
      expect(e.message).to.contain(`HTTP ${status}: FAULT: test fault ${status}`);
    }
    expect(cmls.applications.has('10')).to.equal(false);
  });

  it('a hung server: a LicensingLinkError after the timeout; a refused connection: a LicensingLinkError', async () => {
    const quick = new CmlsHttpAuthority(adapterOptions(pki, cmls.url, { timeoutMs: 300 }));
    cmls.faults.push({ kind: 'hang' });
    const started = Date.now();
    const hung = await rejection(quick.submit(application(11)));
    expect(hung).to.be.instanceOf(LicensingLinkError);
    expect(hung.message).to.equal('PUT /cmls/v1/vendors/VENDOR-7/licence-applications/11: no answer within 300 ms');
    expect(Date.now() - started).to.be.below(2_000);
    const refused = await rejection(new CmlsHttpAuthority(adapterOptions(pki, `https://127.0.0.1:${await closedPort()}`)).submit(application(11)));
    expect(refused).to.be.instanceOf(LicensingLinkError);
    expect(refused.message).to.match(/: ECONNREFUSED: /);
  });

  it('a server whose certificate is from another CA is refused before anything is sent; a client without the vendor certificate is refused by the server', async () => {
    const rogue = await TestCmlsServer.start(pki, { rogue: true });
    try {
      const e = await rejection(new CmlsHttpAuthority(adapterOptions(pki, rogue.url)).submit(application(12)));
      expect(e).to.be.instanceOf(LicensingLinkError);
      expect(e.message).to.match(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|unable to verify/i);
      expect(rogue.count()).to.equal(0);
    } finally {
      await rogue.close();
    }
    const seen = cmls.count();
    const stranger = new CmlsHttpAuthority(adapterOptions(pki, cmls.url, { clientCert: readFileSync(pki.rogueClient.certPath), clientKey: readFileSync(pki.rogueClient.keyPath) }));
    const e = await rejection(stranger.submit(application(12)));
    expect(e).to.be.instanceOf(LicensingLinkError);
    expect(cmls.count()).to.equal(seen);
    expect(cmls.applications.has('12')).to.equal(false);
  });

  it('answers that do not fit the contract are no answer: thrown, never a decision', async () => {
    const malformed: Fault[] = [
      { kind: 'raw', status: 201, body: '{"status":"approved"}' },
      { kind: 'raw', status: 201, body: '{"status":"approved","licenceNumber":"has space"}' },
      { kind: 'raw', status: 201, body: '{"status":"approved","licenceNumber":""}' },
      { kind: 'raw', status: 201, body: `{"status":"approved","licenceNumber":"${'L'.repeat(65)}"}` },
      { kind: 'raw', status: 200, body: '{"status":"refused","reason":"no"}' },
      { kind: 'raw', status: 200, body: '{"status":"refused","reasonCode":"X","reason":7}' },
      { kind: 'raw', status: 200, body: '{"status":"under-review","caseNumber":"C-1"}' },
      { kind: 'raw', status: 202, body: '{"status":"approved","licenceNumber":"L-1"}' },
      { kind: 'raw', status: 202, body: '{"status":"under-review","caseNumber":42}' },
      { kind: 'raw', status: 200, body: '{"status":"granted","licenceNumber":"L-1"}' },
      { kind: 'raw', status: 200, body: '["approved"]' },
      { kind: 'raw', status: 200, body: 'approved' },
      { kind: 'raw', status: 201, body: '{"status":"approved","licenceNumber":"L-1"}', contentType: 'text/html' },
    ];
    for (const fault of malformed) {
      cmls.faults.push(fault);
      const e = await rejection(adapter.submit(application(13)));
      expect(e, JSON.stringify(fault)).not.to.be.instanceOf(LicensingLinkError);
      expect(e.message, JSON.stringify(fault)).to.match(/the authority's answer does not fit the contract: /);
    }
  });

  it('a revocation is POSTed to the licence (its number escaped), idempotent on it; an unknown licence (404 UNKNOWN_LICENCE) is a LicenceUnknownError; an answer about another licence is thrown', async () => {
    const revocation: LicenceRevocation = { meterId: 'VBI-T1', licenceId: 'PA/20260/1', reason: 'mailer left', revokedAt: '2026-12-02T09:00:00.000Z' };
    await adapter.reportRevocation(revocation);
    const sent = cmls.received[cmls.received.length - 1];
    expect(sent).to.deep.include({ method: 'POST', path: '/cmls/v1/vendors/VENDOR-7/licences/PA%2F20260%2F1/revocations', idempotencyKey: 'VENDOR-7-revocation-PA/20260/1' });
    expect(sent.body).to.deep.equal({ reason: 'mailer left', revokedAt: '2026-12-02T09:00:00.000Z' });
    await adapter.reportRevocation(revocation);
    expect([...cmls.revocations.entries()]).to.deep.equal([['PA/20260/1', { reason: 'mailer left', revokedAt: '2026-12-02T09:00:00.000Z', idempotencyKey: 'VENDOR-7-revocation-PA/20260/1' }]]);
    const unknown = await rejection(adapter.reportRevocation({ ...revocation, licenceId: 'PA/20260/77' }));
    expect(unknown.message).to.equal('POST /cmls/v1/vendors/VENDOR-7/licences/PA%2F20260%2F77/revocations: HTTP 404: UNKNOWN_LICENCE: no such licence');
    expect(unknown).to.be.instanceOf(LicenceUnknownError);
    // a 404 that is not the authority's "no such licence" (a wrong path, a proxy) is not taken for one
    cmls.faults.push({ kind: 'status', status: 404, body: { error: { code: 'NOT_FOUND', message: 'no such resource' } } });
    const other = await rejection(adapter.reportRevocation(revocation));
    expect(other).not.to.be.instanceOf(LicenceUnknownError);
    expect(other).not.to.be.instanceOf(LicensingLinkError);
    cmls.faults.push({ kind: 'raw', status: 201, body: '{"status":"revoked","licenceNumber":"PA/20260/2"}' });
    expect((await rejection(adapter.reportRevocation(revocation))).message).to.match(/does not fit the contract/);
    cmls.faults.push({ kind: 'status', status: 503 });
    expect(await rejection(adapter.reportRevocation(revocation))).to.be.instanceOf(LicensingLinkError);
  });

  it("the authority's licence events: licence-revoked events become revocations, other kinds are skipped, pages follow the cursor; a malformed event is thrown, a 503 is a link failure", async () => {
    cmls.events.push(
      { type: 'licence-revoked', licenceNumber: 'PA/20260/1', reasonCode: 'LICENCE_WITHDRAWN', reason: 'withdrawn by the post office', revokedAt: '2026-12-02T09:00:00.000Z' },
      { type: 'licence-renewed', licenceNumber: 'PA/20260/1' },
      { type: 'licence-revoked', licenceNumber: 'PA/20260/9', reasonCode: 'FRAUD', reason: 'indicia reused', revokedAt: '2026-12-02T10:00:00.000Z' });
    try {
      const first = await adapter.licenceEvents(null);
      expect(first).to.deep.equal({ revocations: [{ licenceId: 'PA/20260/1', reason: 'LICENCE_WITHDRAWN: withdrawn by the post office', revokedAt: '2026-12-02T09:00:00.000Z' }], cursor: 'c2', more: true });
      expect(cmls.received.at(-1)).to.deep.include({ method: 'GET', path: '/cmls/v1/vendors/VENDOR-7/licence-events', clientCn: 'VENDOR-7' });
      const second = await adapter.licenceEvents('c2');
      expect(second).to.deep.equal({ revocations: [{ licenceId: 'PA/20260/9', reason: 'FRAUD: indicia reused', revokedAt: '2026-12-02T10:00:00.000Z' }], cursor: 'c3', more: false });
      expect(cmls.received.at(-1)?.path).to.equal('/cmls/v1/vendors/VENDOR-7/licence-events?after=c2');
      expect(await adapter.licenceEvents('c2')).to.deep.equal(second);
      cmls.faults.push({ kind: 'raw', status: 200, body: JSON.stringify({ events: [{ type: 'licence-revoked', licenceNumber: 'has a space', reason: 'x', revokedAt: '2026-12-02T10:00:00Z' }], cursor: 'c9', more: false }) });
      const bad = await rejection(adapter.licenceEvents('c3'));
      expect(bad).not.to.be.instanceOf(LicensingLinkError);
      expect(bad.message).to.match(/^the authority's events do not fit the contract/);
      cmls.faults.push({ kind: 'status', status: 503 });
      expect(await rejection(adapter.licenceEvents('c3'))).to.be.instanceOf(LicensingLinkError);
    } finally {
      cmls.events.length = 0;
    }
  });

  describe('configuration (VBI_LICENSING_AUTHORITY=cmls-http)', () => {
    const env = () => ({
      VBI_CMLS_URL: 'https://cmls.example.test/base/', VBI_CMLS_VENDOR_ID: 'VENDOR-7',
      VBI_CMLS_CLIENT_CERT: pki.vendorClient.certPath, VBI_CMLS_CLIENT_KEY: pki.vendorClient.keyPath, VBI_CMLS_CA: pki.authorityCa.certPath,
    });

    it('complete settings: the files read, the default timeout', () => {
      const o = cmlsHttpOptionsFromEnv(env());
      expect([o.url, o.vendorId, o.timeoutMs]).to.deep.equal(['https://cmls.example.test/base/', 'VENDOR-7', CMLS_TIMEOUT_DEFAULT_MS]);
      expect(o.clientCert.toString()).to.equal(readFileSync(pki.vendorClient.certPath).toString());
      expect(cmlsHttpOptionsFromEnv({ ...env(), VBI_CMLS_TIMEOUT_MS: '2500' }).timeoutMs).to.equal(2_500);
    });

    it('a missing or unusable setting is CONFIG_INVALID naming the variable, never a file\'s content', () => {
      for (const [over, message] of [
        [{ VBI_CMLS_URL: '' }, 'VBI_LICENSING_AUTHORITY=cmls-http needs VBI_CMLS_URL'],
        [{ VBI_CMLS_URL: 'not a url' }, 'VBI_CMLS_URL is not a URL'],
        [{ VBI_CMLS_URL: 'http://cmls.example.test' }, 'VBI_CMLS_URL must be an https URL (the authority is reached over mutual TLS)'],
        [{ VBI_CMLS_URL: 'https://user:pw@cmls.example.test' }, 'VBI_CMLS_URL must be a base URL without credentials, query or fragment'],
        [{ VBI_CMLS_VENDOR_ID: undefined }, 'VBI_LICENSING_AUTHORITY=cmls-http needs VBI_CMLS_VENDOR_ID'],
        [{ VBI_CMLS_VENDOR_ID: 'vendor/7' }, 'VBI_CMLS_VENDOR_ID must be 1 to 64 letters, digits, ".", "_" or "-"'],
        [{ VBI_CMLS_CLIENT_CERT: join(pki.dir, 'missing.pem') }, `VBI_CMLS_CLIENT_CERT: cannot read ${join(pki.dir, 'missing.pem')} (ENOENT)`],
        [{ VBI_CMLS_CLIENT_CERT: pki.vendorClient.keyPath }, 'VBI_CMLS_CLIENT_CERT does not hold a PEM certificate'],
        [{ VBI_CMLS_CLIENT_KEY: pki.vendorClient.certPath }, 'VBI_CMLS_CLIENT_KEY does not hold a PEM private key'],
        [{ VBI_CMLS_CLIENT_KEY: pki.rogueClient.keyPath }, 'VBI_CMLS_CLIENT_KEY is not the key of the certificate in VBI_CMLS_CLIENT_CERT'],
        [{ VBI_CMLS_CA: undefined }, 'VBI_LICENSING_AUTHORITY=cmls-http needs VBI_CMLS_CA'],
        [{ VBI_CMLS_CA: pki.vendorClient.keyPath }, 'VBI_CMLS_CA does not hold a PEM certificate'],
        [{ VBI_CMLS_TIMEOUT_MS: 'soon' }, 'VBI_CMLS_TIMEOUT_MS must be a whole number of milliseconds from 100 to 30000'],
        [{ VBI_CMLS_TIMEOUT_MS: '60000' }, 'VBI_CMLS_TIMEOUT_MS must be a whole number of milliseconds from 100 to 30000'],
      ] as Array<[Record<string, string | undefined>, string]>) {
        const e = (() => { try { cmlsHttpOptionsFromEnv({ ...env(), ...over }); return null; } catch (x) { return x; } })();
        expect(isVbiError(e, 'CONFIG_INVALID'), JSON.stringify(over)).to.equal(true);
        expect((e as Error).message).to.equal(message);
        expect((e as Error).message).not.to.contain('-----BEGIN');
      }
    });
  });
});

/** An authority whose target the test switches (the real adapter, or one at a closed port). */
class Switchable implements LicensingAuthority {
  readonly name = 'cmls-http';
  constructor(public target: LicensingAuthority) {}
  submit(a: LicenceApplication) {
    return this.target.submit(a);
  }
  reportRevocation(r: LicenceRevocation) {
    return this.target.reportRevocation(r);
  }
  licenceEvents(after: string | null) {
    return this.target.licenceEvents(after);
  }
}

describe('CMLS HTTP adapter behind the real service: licence requests and revocation reports', function () {
  this.timeout(180_000);
  let pki: CmlsPki;
  let cmls: TestCmlsServer;
  let adapter: CmlsHttpAuthority;
  let authority: Switchable;
  let f: ServerFixture;
  let licensedMeter = '';

  before(async () => {
    pki = cmlsPki();
    cmls = await TestCmlsServer.start(pki);
    adapter = new CmlsHttpAuthority(adapterOptions(pki, cmls.url, { timeoutMs: 1_000 }));
    authority = new Switchable(adapter);
    f = await serverFixture({ licensing: authority, licensingTimer: false });
  });
  after(async () => {
    await f?.close();
    await cmls?.close();
  });

  const requestOf = (meterId: string) => f.service.db.knex('license_requests').where({ meter_id: meterId }).first();
  const reportOf = (meterId: string) => f.service.db.knex('licence_revocation_reports').where({ meter_id: meterId }).first();
  const register = async (zip = '20260') => {
    const c = new RawClient(f.url);
    const done = await c.register('cmls test password', 'CMLS Mailer', zip);
    return { meterId: c.meterId, licence: done.licence as { status: string; licenceId?: string; reason?: string } };
  };
  const noRevocations = { reported: 0, unreported: 0, unknown: 0 };

  it('step 1c: licensed by the authority over mutual TLS (its licence number in the package), refused with its reason, or left pending under review', async () => {
    const ok = await register();
    const row = await requestOf(ok.meterId);
    expect(ok.licence).to.deep.equal({ status: 'licensed', licenceId: `PA/20260/${row.request_id}` });
    expect(row).to.deep.include({ status: 'licensed', licence_id: `PA/20260/${row.request_id}` });
    const meter = await f.service.db.knex('meters').where({ meter_id: ok.meterId }).first('package');
    expect(await openPackage(f.service.engines[0].hsm, meter.package, ok.meterId)).to.deep.include({ licence: 'licensed', licenceId: row.licence_id });
    const sent = cmls.received.find((r) => r.body?.meter?.meterId === ok.meterId);
    expect(sent).to.deep.include({ idempotencyKey: `VENDOR-7-${row.request_id}`, clientCn: 'VENDOR-7' });
    expect(sent?.body.meter.indiciumCertificateSerial).to.match(/^[0-9a-f]+$/);
    licensedMeter = ok.meterId;

    const no = await register('00000');
    expect(no.licence).to.deep.equal({ status: 'refused', reason: 'ZIP_NOT_SERVED: no post office has this ZIP' });
    const review = await register('99999');
    expect(review.licence).to.deep.equal({ status: 'pending' });
    expect(await requestOf(review.meterId)).to.deep.include({ status: 'pending', authority_ref: `CASE-${(await requestOf(review.meterId)).request_id}`, last_error: null });
    expect(await f.server.licensingPass()).to.deep.equal({ licensed: 0, refused: 0, pending: 1, revocations: noRevocations, fromAuthority: { revoked: 0, unknown: 0 } });
  });

  it('no answer (5xx, a hung server, a refused connection), a 409 or a malformed answer: the request stays pending with the error, and the next pass licenses it', async () => {
    const cases: Array<[() => void, RegExp]> = [
      [() => cmls.faults.push({ kind: 'status', status: 503 }), /^cmls-http: PUT \S+: HTTP 503: FAULT: test fault 503$/],
      [() => cmls.faults.push({ kind: 'hang' }), /^cmls-http: PUT \S+: no answer within 1000 ms$/],
      [() => { authority.target = deadAdapter; }, /^cmls-http: PUT \S+: ECONNREFUSED: /],
      [() => cmls.faults.push({ kind: 'status', status: 409, body: { error: { code: 'CONFLICT', message: 'another application' } } }), /^cmls-http: PUT \S+: HTTP 409: CONFLICT: another application$/],
      [() => cmls.faults.push({ kind: 'raw', status: 201, body: '{"status":"approved","licenceNumber":"no spaces allowed"}' }), /^cmls-http: the authority's answer does not fit the contract: /],
    ];
    const deadAdapter = new CmlsHttpAuthority(adapterOptions(pki, `https://127.0.0.1:${await closedPort()}`, { timeoutMs: 1_000 }));
    const meters: string[] = [];
    for (const [fault, error] of cases) {
      fault();
      const m = await register();
      authority.target = adapter;
      expect(m.licence, String(error)).to.deep.equal({ status: 'pending' });
      const row = await requestOf(m.meterId);
      expect(row, String(error)).to.deep.include({ status: 'pending', attempts: 1, licence_id: null });
      expect(row.last_error).to.match(error);
      meters.push(m.meterId);
    }
    // the review from the first test is still pending too
    expect(await f.server.licensingPass()).to.deep.equal({ licensed: cases.length, refused: 0, pending: 1, revocations: noRevocations, fromAuthority: { revoked: 0, unknown: 0 } });
    for (const meterId of meters) {
      const row = await requestOf(meterId);
      // attempts counts the answers that left it pending (an approval is recorded by the license command)
      expect(row).to.deep.include({ status: 'licensed', licence_id: `PA/20260/${row.request_id}`, attempts: 1, last_error: null });
    }
  });

  it('an operator\'s revocation is reported once with the licence number and reason; a link failure leaves it due for the next pass; a never-licensed meter reports nothing', async () => {
    await f.service.ledger.revokeLicence({ meterId: licensedMeter, operator: 'Olga Operator', reason: 'fraud: indicia reused' });
    const row = await requestOf(licensedMeter);
    expect(await reportOf(licensedMeter)).to.deep.include({ status: 'due', licence_id: row.licence_id, reason: 'fraud: indicia reused', attempts: 0 });
    const refused = (await f.service.db.knex('license_requests').where({ status: 'refused' }).first('meter_id')).meter_id as string;
    await f.service.ledger.revokeLicence({ meterId: refused, operator: 'Olga Operator', reason: 'never licensed' });
    expect(await reportOf(refused)).to.equal(undefined);

    const posts = () => cmls.received.filter((r) => r.method === 'POST');
    // the link is down for one pass (the review still pending is asked in it too)
    authority.target = new CmlsHttpAuthority(adapterOptions(pki, `https://127.0.0.1:${await closedPort()}`, { timeoutMs: 1_000 }));
    try {
      expect((await f.server.licensingPass()).revocations).to.deep.equal({ reported: 0, unreported: 1, unknown: 0 });
    } finally {
      authority.target = adapter;
    }
    expect(await reportOf(licensedMeter)).to.deep.include({ status: 'due', attempts: 1, reported_at: null });
    expect((await reportOf(licensedMeter)).last_error).to.match(/^cmls-http: POST \S+: ECONNREFUSED: /);
    expect(cmls.revocations.size).to.equal(0);
    // a 5xx leaves it due the same way (the pass asks about the pending review first: one 502 each)
    cmls.faults.push({ kind: 'status', status: 502 }, { kind: 'status', status: 502 });
    expect((await f.server.licensingPass()).revocations).to.deep.equal({ reported: 0, unreported: 1, unknown: 0 });
    expect((await reportOf(licensedMeter)).last_error).to.match(/^cmls-http: POST \S+: HTTP 502: FAULT: test fault 502$/);

    expect((await f.server.licensingPass()).revocations).to.deep.equal({ reported: 1, unreported: 0, unknown: 0 });
    const reported = await reportOf(licensedMeter);
    expect(reported).to.deep.include({ status: 'reported', attempts: 3, last_error: null });
    expect([...cmls.revocations.entries()]).to.deep.equal([[row.licence_id, {
      reason: 'fraud: indicia reused', revokedAt: (row.revoked_at as Date).toISOString(), idempotencyKey: `VENDOR-7-revocation-${row.licence_id}`,
    }]]);
    expect(posts().map((p) => p.path)).to.deep.equal([1, 2].map(() => `/cmls/v1/vendors/VENDOR-7/licences/${encodeURIComponent(row.licence_id)}/revocations`));

    expect((await f.server.licensingPass()).revocations).to.deep.equal(noRevocations);
    expect(posts()).to.have.length(2);
  });

  it("the authority's own revocations from its feed: the meter's licence revoked and not reported back, an unknown licence kept; no answer leaves the cursor for the next pass", async () => {
    const m = await register();
    const licenceId = m.licence.licenceId!;
    cmls.events.push(
      { type: 'licence-revoked', licenceNumber: licenceId, reasonCode: 'LICENCE_WITHDRAWN', reason: 'withdrawn by the post office', revokedAt: new Date().toISOString() },
      { type: 'licence-revoked', licenceNumber: 'PA/99999/777', reasonCode: 'LICENCE_WITHDRAWN', reason: 'another vendor\'s', revokedAt: new Date().toISOString() });
    const cursor = () => f.service.db.knex('licence_event_cursors').where({ authority: 'cmls-http' }).first('cursor');
    const before = await cursor();
    authority.target = new CmlsHttpAuthority(adapterOptions(pki, `https://127.0.0.1:${await closedPort()}`, { timeoutMs: 1_000 }));
    try {
      expect((await f.server.licensingPass()).fromAuthority).to.deep.equal({ revoked: 0, unknown: 0 });
    } finally {
      authority.target = adapter;
    }
    expect(await cursor()).to.deep.equal(before);
    expect((await openPackage(f.service.engines[0].hsm, (await f.service.db.knex('meters').where({ meter_id: m.meterId }).first('package')).package, m.meterId)).licence).to.equal('licensed');
    expect((await f.server.licensingPass()).fromAuthority).to.deep.equal({ revoked: 1, unknown: 1 });
    expect((await openPackage(f.service.engines[0].hsm, (await f.service.db.knex('meters').where({ meter_id: m.meterId }).first('package')).package, m.meterId)).licence).to.equal('revoked');
    expect(await requestOf(m.meterId)).to.deep.include({ status: 'revoked', reason: 'revoked by the licensing authority (cmls-http): LICENCE_WITHDRAWN: withdrawn by the post office' });
    expect(await reportOf(m.meterId)).to.equal(undefined);
    expect(await f.service.db.knex('licence_events_unmatched').pluck('licence_id')).to.deep.equal(['PA/99999/777']);
    expect(await cursor()).to.deep.equal({ cursor: 'c2' });
    expect((await f.server.licensingPass()).fromAuthority).to.deep.equal({ revoked: 0, unknown: 0 });
  });

  it('a revocation of a licence this authority never granted (one from before a switch of adapter): `unknown` once it says so, and not sent again', async () => {
    // the meter under review since the first test gets a licence number of another authority
    const review = (await f.service.db.knex('license_requests').where({ status: 'pending' }).first('meter_id')).meter_id as string;
    await f.service.ledger.license({ meterId: review, licenceId: 'DEV-99999-000001', licensingZip: '99999' });
    await f.service.ledger.revokeLicence({ meterId: review, operator: 'Olga Operator', reason: 'mailer left' });
    expect(await reportOf(review)).to.deep.include({ status: 'due', licence_id: 'DEV-99999-000001' });
    expect((await f.server.licensingPass()).revocations).to.deep.equal({ reported: 0, unreported: 0, unknown: 1 });
    const row = await reportOf(review);
    expect(row).to.deep.include({ status: 'unknown', attempts: 1, reported_at: null });
    expect(row.last_error).to.match(/^cmls-http: POST \S+: HTTP 404: UNKNOWN_LICENCE: no such licence$/);
    const posts = cmls.received.filter((r) => r.method === 'POST').length;
    expect((await f.server.licensingPass()).revocations).to.deep.equal(noRevocations);
    expect(cmls.received.filter((r) => r.method === 'POST').length).to.equal(posts);
  });
});
