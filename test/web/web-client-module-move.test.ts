import { expect } from 'chai';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FetchFn } from '@vbi/client/client/http';
import { checkModuleCertificate } from '@vbi/client/client/module-trust';
import { VbiClient } from '@vbi/client/client/vbi-client';
import { OID } from '@vbi/core/pki/oids';
import { toPem } from '@vbi/core/pki/pem';
import { WebClient } from '@vbi/client/web/client/web-client';
import { codeOf } from '../helpers/codes';
import { freshDatabase } from '../helpers/db';
import { requireClone } from '../helpers/hsm';
import { provisionModules } from '../helpers/ledger';
import { approvalsFor, installTestOfficers } from '../helpers/officers';
import { ServerFixture, serverFixture } from '../helpers/server';
import { createRootCa, issueIndiciumCertificate } from '../helpers/throwaway-ca';

/** The real fetch, with every request's method and path written down (nothing is changed). */
function recorded(): { calls: string[]; fetch: FetchFn } {
  const calls: string[] = [];
  return {
    calls,
    fetch: (url, init) => {
      calls.push(`${init.method ?? 'GET'} ${new URL(url).pathname}`);
      return fetch(url, init);
    },
  };
}

/** What the page keeps in localStorage: the key file's encrypted text, written by every save. */
function storage(): { text: string; writes: number; persist: (t: string) => void } {
  const s = { text: '', writes: 0, persist: (t: string) => {
    s.text = t;
    s.writes += 1;
  } };
  return s;
}

const password = 'password of a web mailer that moves';
const PIECE = { destinationZip: '10001', postage: 500 };

/**
 * The web app's client (packages/client/src/web/client/web-client.ts, WebCrypto; run here in Node, whose
 * globalThis.crypto.subtle is WebCrypto, with the page's localStorage replaced by the `persist`
 * callback the page hands it) moves to another module as the SDK does
 * (packages/client/src/web/client/web-module-move.ts, docs/protocol.md 8) when session-open is refused with
 * NO_MODULE or UNKNOWN_MODULE. Against the real service, as test/client/client-module-move.test.ts.
 */
describe('web client: moving to another module when the key file\'s module is gone', function () {
  this.timeout(300_000);
  let f: ServerFixture;
  let dir: string;
  let A: string;
  let B: string;
  const clients: WebClient[] = [];

  before(function () {
    requireClone(this); // two modules share the package keys
    dir = mkdtempSync(join(process.env.VBI_TEST_ROOT as string, 'web-module-move-'));
  });
  beforeEach(async () => {
    f = await serverFixture({ modules: 2 });
    [A, B] = f.service.engines.map((e) => e.hsm.serial);
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.session?.stop(); // no heartbeat timer outlives its test
    await f?.close();
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const takeAway = async (serial: string) => {
    const engine = f.service.engines.find((e) => e.hsm.serial === serial)!;
    await engine.hsm.close();
    expect(engine.status().state).to.equal('UnInitialized');
  };

  const register = async (name: string, fetchFn: FetchFn) => {
    const kept = storage();
    const { client } = await WebClient.register({
      baseUrl: f.url, rootCertPem: f.rootPem, name, licensingZip: '20260', returnAddress: [name, '1 Main St'], password, persist: kept.persist, fetch: fetchFn,
    });
    clients.push(client);
    expect(client.state.moduleSerial).to.equal(A); // registration takes the first module listed
    return { c: client, kept };
  };

  it('session-open refused with NO_MODULE: the web client moves to the other module, prints there, the key file names it, earlier receipts still verify', async () => {
    const rec = recorded();
    const { c, kept } = await register('Web Move Session', rec.fetch);
    await c.buy({ amount: 10_000, payment: { kind: 'card', token: 'tok_approve' } });
    await c.openSession();
    const first = await c.print([PIECE]);
    expect(first.items.map((i) => i.status)).to.deep.equal(['printed']);
    const old = first.items[0].printed!;
    expect(old.receipt.moduleSerial).to.equal(A);
    await c.closeSession();
    const entryOfA = c.state.modules.find((m) => m.serial === A);

    await takeAway(A);
    rec.calls.length = 0;
    await c.openSession();
    expect(rec.calls).to.deep.equal(['POST /v1/sessions', 'GET /v1/modules', `POST /v1/registrations/${c.meterId}/challenge`, 'POST /v1/sessions']);
    expect(c.state.moduleSerial).to.equal(B);
    const second = await c.print([PIECE]);
    expect(second.items.map((i) => [i.status, i.printed?.receipt.moduleSerial])).to.deep.equal([['printed', B]]);
    // the indicium printed with A, fetched again: its receipt checked with A's identity key, still known
    const again = await c.redeliver({ fromSequence: old.decoded.fields.sequence, toSequence: old.decoded.fields.sequence });
    expect(again.map((x) => [x.receipt.moduleSerial, x.indicium.equals(old.indicium)])).to.deep.equal([[A, true]]);
    // every receipt of the meter, A's and B's, verifies
    const signed = (await c.transactions()).filter((t) => t.receipt);
    expect(new Set(signed.map((t) => t.receipt!.moduleSerial))).to.deep.equal(new Set([A, B]));
    expect(signed.map((t) => t.receiptVerified)).to.deep.equal(signed.map(() => true));
    await c.closeSession();

    // the key file the page kept: module B with the transport key it proved; A's entry kept as it was
    expect(kept.text).to.equal(c.keyFileText);
    const reopened = await WebClient.open({ text: kept.text, name: 'kept', password, baseUrl: f.url, persist: kept.persist, fetch: rec.fetch });
    clients.push(reopened);
    expect(reopened.state.moduleSerial).to.equal(B);
    expect(reopened.state.modules.find((m) => m.serial === A)).to.deep.equal(entryOfA);
    expect(reopened.state.modules.filter((m) => m.serial === B).map((m) => m.transportKey))
      .to.deep.equal([f.service.engines[1].hsm.transportPublicKey().toString('base64')]);
    expect((await reopened.moduleIdentity()).serial).to.equal(B);
    // the next session goes to B at once: no move
    rec.calls.length = 0;
    await reopened.openSession();
    expect(rec.calls).to.deep.equal(['POST /v1/sessions']);
    await reopened.closeSession();
    expect((await reopened.balance()).descending).to.equal(10_000 - 2 * 500);

    // the same key file exported to the CLI: it names B too
    const keyFilePath = join(dir, 'web-move-session.json');
    writeFileSync(keyFilePath, kept.text);
    const cli = await VbiClient.open({ keyFilePath, password, baseUrl: f.url });
    expect(cli.state.moduleSerial).to.equal(B);
    await cli.close();
  });

  it('the other module does not prove itself (its certificate chains to another root): CERT_INVALID, the key file is not changed', async () => {
    const rec = recorded();
    const { c, kept } = await register('Web Move Impostor', rec.fetch);
    await takeAway(A);
    // B's identity certificate in the database replaced by one for the same key and name from a throwaway CA
    const row = await f.service.db.knex('modules').where({ module_serial: B }).first('identity_certificate', 'identity_chain');
    const spki = new X509Certificate(row.identity_certificate as Buffer).publicKey.export({ type: 'spki', format: 'der' });
    const ca = createRootCa(join(dir, 'impostor-ca'), 'Not The Postal Root');
    const forged = issueIndiciumCertificate(join(dir, 'impostor-ca'), ca, { spki, subject: `/OU=module-identity/CN=${B}`, extendedKeyUsage: OID.kpModuleIdentity });
    // a good module certificate, only under the wrong root
    checkModuleCertificate({ rootCertPem: ca.certPem, moduleSerial: B, certificateChain: [toPem('CERTIFICATE', forged)], at: new Date() });
    await f.service.db.knex('modules').where({ module_serial: B }).update({ identity_certificate: forged, identity_chain: [] });

    const text = kept.text;
    const writes = kept.writes;
    rec.calls.length = 0;
    expect(await codeOf(c.openSession())).to.equal('CERT_INVALID');
    expect(rec.calls).to.deep.equal(['POST /v1/sessions', 'GET /v1/modules', `POST /v1/registrations/${c.meterId}/challenge`]);
    expect(c.session).to.equal(undefined);
    expect([kept.writes, kept.text === text, c.keyFileText === text]).to.deep.equal([writes, true, true]);
    expect(c.state.moduleSerial).to.equal(A);
    expect(c.state.modules.map((m) => m.serial)).to.deep.equal([A, B]);

    // with B's own certificate back, the same client moves
    await f.service.db.knex('modules').where({ module_serial: B }).update({ identity_certificate: row.identity_certificate, identity_chain: row.identity_chain });
    await c.openSession();
    expect(c.state.moduleSerial).to.equal(B);
    await c.closeSession();
  });

  it('no other module available: the original NO_MODULE, and the key file is not changed', async () => {
    const rec = recorded();
    const { c, kept } = await register('Web Move Nowhere', rec.fetch);
    await takeAway(A);
    await takeAway(B);
    const text = kept.text;
    const writes = kept.writes;
    rec.calls.length = 0;
    const e = await c.openSession().then(() => undefined, (x: { code?: string; message?: string }) => x);
    expect([e?.code, e?.message]).to.deep.equal(['NO_MODULE', 'no healthy cryptographic module is available']);
    expect(rec.calls).to.deep.equal(['POST /v1/sessions', 'GET /v1/modules']);
    expect([kept.writes, kept.text === text, c.keyFileText === text]).to.deep.equal([writes, true, true]);
    expect(c.state.moduleSerial).to.equal(A);
  });
});

/**
 * The disaster the move is for, in the browser: the module token the mailer registered with is
 * lost for good and an off-site module (cloned shared keys, its own identity, reinstated by its
 * officers on the same database) takes over. The service does not know the key file's module
 * (UNKNOWN_MODULE); the page's client moves to the off-site module and goes on.
 */
describe('web client: the key file\'s module lost for good, an off-site module takes over', function () {
  this.timeout(300_000);
  let f: ServerFixture | undefined;
  const clients: WebClient[] = [];

  before(function () {
    requireClone(this);
  });
  after(async () => {
    for (const c of clients) c.session?.stop();
    await f?.close();
  });

  it('session-open refused with UNKNOWN_MODULE: the web client moves to the off-site module, prints, and its earlier receipts still verify', async () => {
    const [lost, offsite] = await provisionModules(2, 'wdr');
    await installTestOfficers(offsite, 2);
    const db = await freshDatabase();
    f = await serverFixture({ db, labels: [lost] });
    const lostSerial = f.service.engines[0].hsm.serial;
    const kept = storage();
    const { client: c } = await WebClient.register({
      baseUrl: f.url, rootCertPem: f.rootPem, name: 'Web Move Disaster', licensingZip: '20260', returnAddress: ['Disaster', '1 Main St'], password, persist: kept.persist,
    });
    clients.push(c);
    await c.buy({ amount: 10_000, payment: { kind: 'card', token: 'tok_approve' } });
    await c.openSession();
    const old = (await c.print([PIECE])).items[0].printed!;
    expect(old.receipt.moduleSerial).to.equal(lostSerial);
    await c.closeSession();
    await f.close();
    f = undefined;

    f = await serverFixture({
      db, labels: [offsite],
      started: async (service) => {
        const engine = service.engines[0];
        await service.ledger.reinstate({ moduleSerial: engine.hsm.serial, officer: 'Operator', acceptCheckpoint: null, approvals: await approvalsFor(engine, null) });
      },
    });
    const offsiteSerial = f.service.engines[0].hsm.serial;
    const rec = recorded();
    const moved = await WebClient.open({ text: kept.text, name: 'kept', password, baseUrl: f.url, persist: kept.persist, fetch: rec.fetch });
    clients.push(moved);
    expect(moved.state.moduleSerial).to.equal(lostSerial);
    await moved.openSession();
    expect(rec.calls).to.deep.equal(['POST /v1/sessions', 'GET /v1/modules', `POST /v1/registrations/${moved.meterId}/challenge`, 'POST /v1/sessions']);
    expect(moved.state.moduleSerial).to.equal(offsiteSerial);
    const printed = await moved.print([PIECE]);
    expect(printed.items.map((i) => [i.status, i.printed?.receipt.moduleSerial])).to.deep.equal([['printed', offsiteSerial]]);
    const again = await moved.redeliver({ fromSequence: old.decoded.fields.sequence, toSequence: old.decoded.fields.sequence });
    expect(again.map((x) => [x.receipt.moduleSerial, x.indicium.equals(old.indicium)])).to.deep.equal([[lostSerial, true]]);
    await moved.closeSession();
    expect((await moved.balance()).descending).to.equal(10_000 - 2 * 500);
    const reopened = await WebClient.open({ text: kept.text, name: 'kept', password, baseUrl: f.url, persist: kept.persist });
    expect(reopened.state.moduleSerial).to.equal(offsiteSerial);
  });
});
