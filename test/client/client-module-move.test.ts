import { expect } from 'chai';
import { X509Certificate, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '@vbi/client/bin/vbi';
import { FetchFn } from '@vbi/client/client/http';
import { checkModuleCertificate } from '@vbi/client/client/module-trust';
import { VbiClient } from '@vbi/client/client/vbi-client';
import { OID } from '@vbi/core/pki/oids';
import { toPem } from '@vbi/core/pki/pem';
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

const password = 'password of a mailer that moves';
const PIECE = { destinationZip: '10001', postage: 500 };

/**
 * The SDK moves to another module of the service (packages/client/src/client/module-move.ts, docs/protocol.md
 * "Moving to another module") when session-open or re-key is refused because the key file's
 * module is unknown to the service (UNKNOWN_MODULE) or not available (NO_MODULE): another module
 * listed by GET /v1/modules proves itself as in registration step 1b, the key file names it, and
 * the operation is sent once more with secrets encrypted to it. Against the real service: a module
 * token taken away (its PKCS#11 sessions closed, so the service lists it no more) and a module
 * token lost for good, replaced by an off-site clone.
 */
describe('client SDK: moving to another module when the key file\'s module is gone', function () {
  this.timeout(300_000);
  let f: ServerFixture;
  let dir: string;
  let A: string;
  let B: string;

  before(function () {
    requireClone(this); // two modules share the package keys
    dir = mkdtempSync(join(process.env.VBI_TEST_ROOT as string, 'module-move-'));
  });
  beforeEach(async () => {
    f = await serverFixture({ modules: 2 });
    [A, B] = f.service.engines.map((e) => e.hsm.serial);
  });
  afterEach(async () => {
    await f?.close();
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Module `serial`'s token taken away from the service: it leaves the rotation and GET /v1/modules. */
  const takeAway = async (serial: string) => {
    const engine = f.service.engines.find((e) => e.hsm.serial === serial)!;
    await engine.hsm.close();
    expect(engine.status().state).to.equal('UnInitialized');
  };

  const register = async (name: string, fetchFn: FetchFn) => {
    const keyFilePath = join(dir, `${name}.json`);
    const c = await VbiClient.register({
      baseUrl: f.url, rootCertPem: f.rootPem, name, licensingZip: '20260', returnAddress: [name, '1 Main St'], password, keyFilePath, fetch: fetchFn,
    });
    expect(c.state.moduleSerial).to.equal(A); // registration takes the first module listed
    return { c, keyFilePath };
  };

  it('GET /v1/modules lists only the modules commands may go to: one the ledger inhibited (its token still Idle) is not listed, and 1b refuses it', async () => {
    const rec = recorded();
    const { c } = await register('Directory', rec.fetch);
    const engineA = f.service.engines[0];
    // the ledger finds a map it cannot explain: module A is inhibited, its hardware stays Idle
    expect(await codeOf(engineA.refuseMap({ epoch: 999_999, root: Buffer.alloc(32) }))).to.equal('RECOVERY_FAILED');
    expect([engineA.hsm.status().state, engineA.status().state]).to.deep.equal(['Idle', 'Inhibited']);
    const listed = await (await fetch(`${f.url}/v1/modules`)).json() as { modules: Array<{ serial: string }> };
    expect(listed.modules.map((m) => m.serial)).to.deep.equal([B]);
    const challenge = await fetch(`${f.url}/v1/registrations/${c.meterId}/challenge`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ moduleSerial: A, clientNonce: randomBytes(32).toString('base64') }),
    });
    expect([challenge.status, ((await challenge.json()) as { error: { code: string } }).error.code]).to.deep.equal([503, 'NO_MODULE']);
    await c.close();
  });

  it('session-open refused with NO_MODULE: the client moves to the other module, prints there, the key file names it, earlier receipts still verify', async () => {
    const rec = recorded();
    const { c, keyFilePath } = await register('Move Session', rec.fetch);
    await c.buy({ amount: 10_000, payment: { kind: 'card', token: 'tok_approve' } });
    await c.openSession({ heartbeats: false });
    const first = await c.print([PIECE]);
    expect(first.printed).to.equal(1);
    const old = first.items[0];
    expect(old.receipt?.moduleSerial).to.equal(A);
    await c.closeSession();
    const entryOfA = c.state.modules.find((m) => m.serial === A);

    await takeAway(A);
    rec.calls.length = 0;
    await c.openSession({ heartbeats: false });
    const challenge = `POST /v1/registrations/${c.meterId}/challenge`;
    expect(rec.calls).to.deep.equal(['POST /v1/sessions', 'GET /v1/modules', challenge, 'POST /v1/sessions']);
    expect(c.state.moduleSerial).to.equal(B);
    const second = await c.print([PIECE]);
    expect(second.printed).to.equal(1);
    expect(second.items[0].receipt?.moduleSerial).to.equal(B);
    // the indicium printed with A, fetched again: its receipt is checked with A's identity key, still known
    const again = await c.redeliver({ fromSequence: old.decoded!.fields.sequence, toSequence: old.decoded!.fields.sequence });
    expect(again.map((x) => [x.receipt.moduleSerial, x.indicium.equals(old.indicium!)])).to.deep.equal([[A, true]]);
    await c.closeSession();
    await c.close();

    // the key file: module B with the transport key it proved; A's entry kept as it was
    const reopened = await VbiClient.open({ keyFilePath, password, fetch: rec.fetch });
    expect(reopened.state.moduleSerial).to.equal(B);
    expect(reopened.state.modules.find((m) => m.serial === A)).to.deep.equal(entryOfA);
    expect(reopened.state.modules.filter((m) => m.serial === B).map((m) => m.transportKey))
      .to.deep.equal([f.service.engines[1].hsm.transportPublicKey().toString('base64')]);
    // the next session goes to B at once: no move
    rec.calls.length = 0;
    await reopened.openSession({ heartbeats: false });
    expect(rec.calls).to.deep.equal(['POST /v1/sessions']);
    await reopened.closeSession();
    expect((await reopened.balance()).descending).to.equal(10_000 - 2 * 500);
    await reopened.close();
  });

  it('the other module does not prove itself (its certificate chains to another root): CERT_INVALID, the key file is not changed', async () => {
    const rec = recorded();
    const { c, keyFilePath } = await register('Move Impostor', rec.fetch);
    await takeAway(A);
    // B's identity certificate in the database replaced by one for the same key and name from a throwaway CA
    const row = await f.service.db.knex('modules').where({ module_serial: B }).first('identity_certificate', 'identity_chain');
    const spki = new X509Certificate(row.identity_certificate as Buffer).publicKey.export({ type: 'spki', format: 'der' });
    const ca = createRootCa(join(dir, 'impostor-ca'), 'Not The Postal Root');
    const forged = issueIndiciumCertificate(join(dir, 'impostor-ca'), ca, { spki, subject: `/OU=module-identity/CN=${B}`, extendedKeyUsage: OID.kpModuleIdentity });
    // a good module certificate, only under the wrong root
    checkModuleCertificate({ rootCertPem: ca.certPem, moduleSerial: B, certificateChain: [toPem('CERTIFICATE', forged)], at: new Date() });
    await f.service.db.knex('modules').where({ module_serial: B }).update({ identity_certificate: forged, identity_chain: [] });

    const bytes = readFileSync(keyFilePath);
    rec.calls.length = 0;
    expect(await codeOf(c.openSession({ heartbeats: false }))).to.equal('CERT_INVALID');
    expect(rec.calls).to.deep.equal(['POST /v1/sessions', 'GET /v1/modules', `POST /v1/registrations/${c.meterId}/challenge`]);
    expect(await codeOf(c.moveModule())).to.equal('CERT_INVALID');
    let out = '';
    let err = '';
    const io = { stdout: { write: (t: string) => (out += t) }, stderr: { write: (t: string) => (err += t) }, cwd: dir, env: { VBI_PASSWORD: password, VBI_KEY_FILE: keyFilePath } };
    expect(await runCli(['move-module'], io)).to.equal(1);
    expect(err).to.match(/^CERT_INVALID: /);
    expect(readFileSync(keyFilePath).equals(bytes)).to.equal(true);
    expect(c.state.moduleSerial).to.equal(A);
    expect((await VbiClient.open({ keyFilePath, password })).state.moduleSerial).to.equal(A);

    // with B's own certificate back, the same move goes through (vbi move-module)
    await f.service.db.knex('modules').where({ module_serial: B }).update({ identity_certificate: row.identity_certificate, identity_chain: row.identity_chain });
    expect(await runCli(['move-module'], io), err).to.equal(0);
    expect(out).to.include(`now go to module ${B} (was ${A})`);
    expect((await VbiClient.open({ keyFilePath, password })).state.moduleSerial).to.equal(B);
  });

  it('no other module available: the original NO_MODULE, and the key file is not changed', async () => {
    const rec = recorded();
    const { c, keyFilePath } = await register('Move Nowhere', rec.fetch);
    await takeAway(A);
    await takeAway(B);
    const bytes = readFileSync(keyFilePath);
    rec.calls.length = 0;
    const e = await c.openSession({ heartbeats: false }).then(() => undefined, (x: { code?: string; message?: string }) => x);
    expect([e?.code, e?.message]).to.deep.equal(['NO_MODULE', 'no healthy cryptographic module is available']);
    expect(rec.calls).to.deep.equal(['POST /v1/sessions', 'GET /v1/modules']);
    expect(await codeOf(c.moveModule())).to.equal('NO_MODULE');
    expect(readFileSync(keyFilePath).equals(bytes)).to.equal(true);
    expect(c.state.moduleSerial).to.equal(A);
  });

  it('a re-key refused with NO_MODULE moves to the other module; the new secrets go to it and the new password works', async () => {
    const rec = recorded();
    const { c, keyFilePath } = await register('Move Rekey', rec.fetch);
    await c.buy({ amount: 5_000, payment: { kind: 'card', token: 'tok_approve' } });
    const hmkBefore = c.state.hmk;
    await takeAway(A);
    rec.calls.length = 0;
    const r = await c.rekey({ newPassword: 'the password after the move' });
    expect(Date.parse(r.userSecretsExpiry)).to.be.greaterThan(Date.now());
    expect(rec.calls).to.deep.equal(['POST /v1/rekey', 'GET /v1/modules', `POST /v1/registrations/${c.meterId}/challenge`, 'POST /v1/rekey']);
    expect(c.state.moduleSerial).to.equal(B);
    expect(c.state.pendingRekey).to.equal(undefined);
    expect(c.state.hmk).to.not.equal(hmkBefore);
    await c.openSession({ heartbeats: false });
    expect((await c.print([PIECE])).printed).to.equal(1);
    await c.closeSession();
    await c.close();
    expect(await codeOf(VbiClient.open({ keyFilePath, password }))).to.equal('WRONG_PASSWORD');
    const again = await VbiClient.open({ keyFilePath, password: 'the password after the move' });
    expect(again.state.moduleSerial).to.equal(B);
    expect((await again.balance()).descending).to.equal(5_000 - 500);
    await again.close();
  });
});

/**
 * The disaster the move is for: the module token the mailer registered with is lost for good,
 * and an off-site module of the deployment (cloned shared keys, its own identity, reinstated by
 * its officers on the database) takes over. The service does not know the key file's module at
 * all (UNKNOWN_MODULE); the client moves to the off-site module and goes on.
 */
describe('client SDK: the key file\'s module lost for good, an off-site module takes over', function () {
  this.timeout(300_000);
  let f: ServerFixture | undefined;
  let dir: string;

  before(function () {
    requireClone(this);
    dir = mkdtempSync(join(process.env.VBI_TEST_ROOT as string, 'module-lost-'));
  });
  after(async () => {
    await f?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('session-open refused with UNKNOWN_MODULE: the client moves to the off-site module, prints, and its earlier receipts still verify', async () => {
    const [lost, offsite] = await provisionModules(2, 'dr');
    await installTestOfficers(offsite, 2);
    const db = await freshDatabase();
    f = await serverFixture({ db, labels: [lost] });
    const lostSerial = f.service.engines[0].hsm.serial;
    const keyFilePath = join(dir, 'dr.json');
    const c = await VbiClient.register({
      baseUrl: f.url, rootCertPem: f.rootPem, name: 'Move Disaster', licensingZip: '20260', returnAddress: ['Disaster', '1 Main St'], password, keyFilePath,
    });
    await c.buy({ amount: 10_000, payment: { kind: 'card', token: 'tok_approve' } });
    await c.openSession({ heartbeats: false });
    const old = (await c.print([PIECE])).items[0];
    expect(old.receipt?.moduleSerial).to.equal(lostSerial);
    await c.closeSession();
    await c.close();
    await f.close();
    f = undefined;

    // the same database, served by the off-site module only, once its officers accepted the database's state
    f = await serverFixture({
      db, labels: [offsite],
      started: async (service) => {
        const engine = service.engines[0];
        await service.ledger.reinstate({ moduleSerial: engine.hsm.serial, officer: 'Operator', acceptCheckpoint: null, approvals: await approvalsFor(engine, null) });
      },
    });
    const offsiteSerial = f.service.engines[0].hsm.serial;
    const rec = recorded();
    const moved = await VbiClient.open({ keyFilePath, password, baseUrl: f.url, fetch: rec.fetch });
    expect(moved.state.moduleSerial).to.equal(lostSerial);
    await moved.openSession({ heartbeats: false });
    expect(rec.calls).to.deep.equal(['POST /v1/sessions', 'GET /v1/modules', `POST /v1/registrations/${moved.meterId}/challenge`, 'POST /v1/sessions']);
    expect(moved.state.moduleSerial).to.equal(offsiteSerial);
    const printed = await moved.print([PIECE]);
    expect(printed.items.map((i) => [i.status, i.receipt?.moduleSerial])).to.deep.equal([['printed', offsiteSerial]]);
    const again = await moved.redeliver({ fromSequence: old.decoded!.fields.sequence, toSequence: old.decoded!.fields.sequence });
    expect(again.map((x) => [x.receipt.moduleSerial, x.indicium.equals(old.indicium!)])).to.deep.equal([[lostSerial, true]]);
    await moved.closeSession();
    expect((await moved.balance()).descending).to.equal(10_000 - 2 * 500);
    await moved.close();
    expect((await VbiClient.open({ keyFilePath, password })).state.moduleSerial).to.equal(offsiteSerial);
  });
});
