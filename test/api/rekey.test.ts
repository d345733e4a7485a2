import { expect } from 'chai';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { VbiClient } from '@vbi/client/client/vbi-client';
import { FetchFn } from '@vbi/client/client/http';
import { passwordSecret, rekeyProofInput } from '@vbi/core/protocol/messages';
import { RawClient } from '../helpers/raw-client';
import { ServerFixture, serverFixture } from '../helpers/server';

/**
 * Re-key (docs/protocol.md 7) against the real service: a new HMK (and password) only with the
 * current HMK and password, the old HMK refused afterwards, a replayed re-key refused; user
 * secrets past their lifetime refuse everything but a re-key — before anyone is charged — and the
 * SDK re-keys; a re-key whose answer is lost is settled by the SDK with whichever key the module
 * holds; the key file follows a password change.
 */
describe('re-key: a new HMK and password for a meter; user secrets that expire', function () {
  this.timeout(180_000);
  let f: ServerFixture;
  let dir: string;
  const password = 'first password of the mailer';

  before(async () => {
    f = await serverFixture();
    dir = mkdtempSync(join(process.env.VBI_TEST_ROOT as string, 'rekey-'));
  });
  after(async () => {
    await f?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const rekeyBody = (c: RawClient, current: string, newHmk: Buffer, newPassword: string, proofNonce = randomBytes(32).toString('base64')) => ({
    moduleSerial: c.moduleSerial, encryptedPasswordSecret: c.encrypt(passwordSecret(current, c.meterId)),
    encryptedNewHmk: c.encrypt(newHmk), encryptedNewPasswordSecret: c.encrypt(passwordSecret(newPassword, c.meterId)), proofNonce,
  });

  it('takes a new HMK only with the current password; the old HMK and a replay are refused afterwards', async () => {
    const c = new RawClient(f.url);
    await c.register(password);
    const newHmk = randomBytes(32);
    // the wrong current password: refused, nothing changes (the old HMK still works)
    const wrong = await c.op('/v1/rekey', 'rekey', rekeyBody(c, 'not the password', newHmk, 'second password'));
    expect([wrong.status, wrong.json.error.code]).to.deep.equal([401, 'WRONG_PASSWORD']);
    expect((await c.op('/v1/balance', 'balance', {})).status).to.equal(200);

    const proofNonce = randomBytes(32).toString('base64');
    const env = c.envelope('rekey', rekeyBody(c, password, newHmk, 'second password', proofNonce));
    const ok = await c.send('/v1/rekey', env);
    expect(ok.status, JSON.stringify(ok.json)).to.equal(200);
    // the answer is MAC'd with the old HMK; the module proves the new one
    expect(ok.json.result.newHmkProof).to.equal(createHmac('sha256', newHmk).update(rekeyProofInput(c.meterId, proofNonce)).digest('base64'));
    expect(Date.parse(ok.json.result.userSecretsExpiry)).to.be.greaterThan(Date.now() + 700 * 86_400_000);
    // the old HMK is refused now; the new one works
    const old = await c.op('/v1/balance', 'balance', {});
    expect([old.status, old.json.error.code]).to.deep.equal([401, 'BAD_MAC']);
    const oldHmk = c.hmk;
    c.hmk = newHmk;
    expect((await c.op('/v1/balance', 'balance', {})).status).to.equal(200);
    // the same re-key sent again: its challenge is spent (and its MAC is the old HMK's)
    const replay = await c.send('/v1/rekey', env);
    expect(replay.status).to.be.oneOf([401, 409]);
    expect(['BAD_MAC', 'STALE_CHALLENGE']).to.include(replay.json.error.code);
    // the old password no longer opens a session; the new one does
    const sessionWith = (pw: string) => c.op('/v1/sessions', 'session-open', {
      moduleSerial: c.moduleSerial, encryptedPasswordSecret: c.encrypt(passwordSecret(pw, c.meterId)), encryptedSessionKey: c.encrypt(randomBytes(32)),
    });
    expect((await sessionWith(password)).json.error.code).to.equal('WRONG_PASSWORD');
    expect((await sessionWith('second password')).status).to.equal(200);
    expect(oldHmk.equals(newHmk)).to.equal(false);
  });

  it('through the SDK: a password change moves the key file to the new password, and the meter works on', async () => {
    const keyFilePath = join(dir, 'sdk.json');
    const c = await VbiClient.register({
      baseUrl: f.url, rootCertPem: f.rootPem, name: 'Rekey SDK', licensingZip: '20260', returnAddress: ['Rekey', '1 Main St'], password, keyFilePath,
    });
    await c.buy({ amount: 5_000, payment: { kind: 'card', token: 'tok_approve' } });
    const hmkBefore = c.state.hmk;
    const r = await c.rekey({ newPassword: 'the new password' });
    expect(Date.parse(r.userSecretsExpiry)).to.be.greaterThan(Date.now());
    expect(c.state.hmk).to.not.equal(hmkBefore);
    expect(c.state.pendingRekey).to.equal(undefined);
    await c.openSession({ heartbeats: false });
    expect((await c.print([{ destinationZip: '10001', postage: 500 }])).printed).to.equal(1);
    await c.closeSession();
    await c.close();
    const refused = await VbiClient.open({ keyFilePath, password }).then(() => 'opened', (e) => (e as { code: string }).code);
    expect(refused).to.equal('WRONG_PASSWORD');
    const again = await VbiClient.open({ keyFilePath, password: 'the new password' });
    expect((await again.balance()).descending).to.equal(4_500);
    await again.close();
  });

  it('a re-key whose answer is lost, or that never arrived: the SDK settles it with the key the module holds', async () => {
    const keyFilePath = join(dir, 'lost.json');
    let loseRekeyAnswer = true;
    let loseBefore = false;
    let failResync = 0;
    // the service receives and commits the re-key; its answer never arrives
    const lossy: FetchFn = async (url, init) => {
      if (loseBefore && String(url).endsWith('/v1/rekey')) {
        loseBefore = false;
        throw new TypeError('fetch failed: the request never left');
      }
      if (failResync > 0 && String(url).endsWith('/v1/resync')) {
        failResync--;
        throw new TypeError('fetch failed: the link is down');
      }
      const res = await fetch(url, init);
      if (loseRekeyAnswer && String(url).endsWith('/v1/rekey')) {
        loseRekeyAnswer = false;
        throw new TypeError('fetch failed: the answer was lost');
      }
      return res;
    };
    const c = await VbiClient.register({
      baseUrl: f.url, rootCertPem: f.rootPem, name: 'Rekey Lost', licensingZip: '20260', returnAddress: ['Rekey', '2 Main St'], password, keyFilePath,
      fetch: lossy, http: { attempts: 1 },
    });
    const hmkBefore = c.state.hmk;
    const r = await c.rekey();
    expect(r.userSecretsExpiry).to.match(/^unknown/);
    expect(c.state.hmk).to.not.equal(hmkBefore);
    expect(c.state.pendingRekey).to.equal(undefined);
    expect((await c.balance()).state).to.equal('active');
    // lost before it reached the service: settled the other way, the old key stays and a new re-key works
    const hmkNow = c.state.hmk;
    loseBefore = true;
    const lost = await c.rekey().then(() => 'answered', (e) => (e as { code?: string }).code ?? 'NETWORK');
    expect(lost).to.not.equal('answered');
    // settled at once by resync: the module still answers to the old HMK, so the new one is dropped
    expect(c.state.pendingRekey).to.equal(undefined);
    expect(c.state.hmk).to.equal(hmkNow);
    expect((await c.balance()).state).to.equal('active');
    expect((await c.rekey()).userSecretsExpiry).to.not.match(/^unknown/);
    expect(c.state.hmk).to.not.equal(hmkNow);
    // the answer lost and the link down for the resync too: the key file keeps both keys until recover() settles it
    const hmkThen = c.state.hmk;
    loseRekeyAnswer = true;
    failResync = 1;
    expect(await c.rekey().then(() => 'answered', () => 'failed')).to.equal('failed');
    expect(c.state.pendingRekey).to.not.equal(undefined);
    expect(c.state.hmk).to.equal(hmkThen);
    const reopened = await VbiClient.open({ keyFilePath, password, fetch: lossy, http: { attempts: 1 } });
    await c.close();
    expect(reopened.state.pendingRekey).to.not.equal(undefined); // saved in the key file before it was sent
    // its first call settles the re-key before anything else is sent
    expect((await reopened.balance()).state).to.equal('active');
    expect(reopened.state.pendingRekey).to.equal(undefined);
    expect(reopened.state.hmk).to.not.equal(hmkThen); // the module had taken it
    expect((await reopened.balance()).state).to.equal('active');
    await reopened.close();
  });

  it('user secrets past their lifetime: everything but a re-key is refused, nobody is charged; the SDK re-keys and the meter works again', async () => {
    const short = await serverFixture({ mailer: { userSecretsLifetimeMs: 4_000 } });
    try {
      const keyFilePath = join(dir, 'expiring.json');
      const c = await VbiClient.register({
        baseUrl: short.url, rootCertPem: short.rootPem, name: 'Expiring', licensingZip: '20260', returnAddress: ['Expiring', '3 Main St'], password, keyFilePath,
      });
      await new Promise((r) => setTimeout(r, 4_100));
      const charged = short.payments.payments().length;
      expect(await c.buy({ amount: 2_000, payment: { kind: 'card', token: 'tok_approve' } }).then(() => 'bought', (e) => (e as { code: string }).code)).to.equal('USER_SECRETS_EXPIRED');
      expect(short.payments.payments().length).to.equal(charged);
      expect(await c.balance().then(() => 'answered', (e) => (e as { code: string }).code)).to.equal('USER_SECRETS_EXPIRED');
      expect(await c.openSession({ heartbeats: false }).then(() => 'opened', (e) => (e as { code: string }).code)).to.equal('USER_SECRETS_EXPIRED');
      // a re-key is allowed, and starts a new lifetime (short here too: used at once)
      const renewed = await c.rekey();
      expect(Date.parse(renewed.userSecretsExpiry)).to.be.greaterThan(Date.now());
      expect((await c.buy({ amount: 2_000, payment: { kind: 'card', token: 'tok_approve' } })).status).to.equal('approved');
      await c.close();
    } finally {
      await short.close();
    }
  });
});
