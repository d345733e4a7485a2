import { expect } from 'chai';
import { createHash, createPublicKey, verify } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import * as pkcs11 from 'pkcs11js';
import { findSlotByLabel } from '@vbi/server/hsm/pkcs11-library';
import { threadsOf } from '@vbi/server/hsm/token-threads';
import { isRecoverable } from '@vbi/server/hsm/pkcs11-errors';
import type { KeyRef } from '@vbi/server/hsm/hsm-module';
import { hsmConfig, provisionToken, startModule, testLibrary, TEST_USER_PIN, uniqueLabel } from '../helpers/hsm';

/**
 * Token threads (packages/server/src/hsm/token-threads.ts) and the calls that use them, on the real token: many
 * calls in one trip answer what the single calls answer; a token error comes back with its CKR
 * code (so recovery still tells a lost session from a refusal); spare key scopes are only taken
 * from free sessions; a program that used the token exits by itself.
 */
describe('token threads', function () {
  this.timeout(60_000);
  const label = uniqueLabel('threads');
  before(async () => {
    await provisionToken(label);
  });

  it('KeyScope.many answers in order what the single calls answer: HMAC checks (wrong MAC, wrong length), signatures, encryptions', async () => {
    const m = await startModule(label);
    try {
      const hmk: KeyRef[] = [{ wrapped: await m.generateWrappedSecretKey(), usage: 'hmac' }];
      const session: KeyRef[] = [{ wrapped: await m.generateWrappedSecretKey(), usage: 'encrypt' }];
      const indicium = await m.generateIndiciumKey({ algorithm: 'ec-p256' });
      const data = Buffer.from('dynamic password input');
      const answers = await m.withKeys(async (k) => {
        const mac = await k.hmac({ keyChain: hmk, data });
        const wrong = Buffer.from(mac);
        wrong[0] ^= 1;
        return k.many([
          { verifyHmac: { keyChain: hmk, data, mac } },
          { verifyHmac: { keyChain: hmk, data, mac: wrong } },
          { verifyHmac: { keyChain: hmk, data, mac: mac.subarray(0, 31) } },
          { signWithWrappedKey: { wrappedKey: indicium.wrappedKey, algorithm: 'ec-p256', data } },
          { identitySign: data },
          { encryptWithKeyChain: { keyChain: session, plaintext: data, aad: Buffer.from('aad') } },
          { encryptWithKeyChain: { keyChain: session, plaintext: data, aad: Buffer.from('aad') } },
          { verifyHmac: { keyChain: hmk, data, mac } },
        ]);
      });
      expect(answers.slice(0, 3)).to.deep.equal([true, false, false]);
      expect(answers[7]).to.equal(true);
      const p1363 = (spki: Buffer, sig: Buffer) => verify('sha256', data, { key: createPublicKey({ key: spki, format: 'der', type: 'spki' }), dsaEncoding: 'ieee-p1363' }, sig);
      expect(p1363(indicium.publicKeySpki, answers[3] as Buffer)).to.equal(true);
      expect(p1363(m.identityPublicKey(), answers[4] as Buffer)).to.equal(true);
      // IV(12) || ciphertext || tag(16), a fresh IV each time
      const [e1, e2] = [answers[5] as Buffer, answers[6] as Buffer];
      expect([e1.length, e2.length]).to.deep.equal([12 + data.length + 16, 12 + data.length + 16]);
      expect(e1.subarray(0, 12).equals(e2.subarray(0, 12))).to.equal(false);
    } finally {
      await m.close();
    }
  });

  it('a token error on a thread comes back as the Pkcs11Error pkcs11js throws, with its CKR code', async () => {
    const slot = findSlotByLabel(testLibrary(), label);
    const s = slot.open(pkcs11.CKF_SERIAL_SESSION | pkcs11.CKF_RW_SESSION);
    try {
      const digest = createHash('sha256').update('x').digest();
      const err = await threadsOf(s).call(s.handle, { fn: 'sign', mechanism: { mechanism: pkcs11.CKM_ECDSA }, key: Buffer.from([0xee, 0xee, 0xee, 0x7e, 0, 0, 0, 0]), data: digest })
        .then(() => null, (e: unknown) => e as pkcs11.Pkcs11Error);
      expect(err).to.be.instanceOf(pkcs11.Pkcs11Error);
      expect([pkcs11.CKR_KEY_HANDLE_INVALID, pkcs11.CKR_OBJECT_HANDLE_INVALID]).to.include(err!.code);
      expect(err!.message).to.match(/^CKR_(KEY|OBJECT)_HANDLE_INVALID$/);
      expect(isRecoverable(err)).to.equal(true);
    } finally {
      s.close();
    }
  });

  it('withSpareKeys takes only free sessions: with the pool busy it runs with none instead of waiting', async () => {
    const m = await startModule(label, 'aes', { hsm: hsmConfig('aes', { sessionPoolSize: 2 }) });
    try {
      // both sessions held by scopes that wait for `release`
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      const holders = [m.withKeys(() => held), m.withKeys(() => held)];
      const busy = await m.withSpareKeys(3, async (scopes) => scopes.length);
      release();
      await Promise.all(holders);
      // with the pool free again it gets as many as the pool has
      const free = await m.withSpareKeys(3, async (scopes) => scopes.length);
      expect([busy, free]).to.deep.equal([0, 2]);
    } finally {
      await m.close();
    }
  });

  it('the last close waits until every token thread has exited before C_Finalize; opened again meanwhile, the library stays usable', () => {
    const script = `
      const { openLibrary, closeLibrary } = require(${JSON.stringify(require.resolve('@vbi/server/hsm/pkcs11-library'))});
      const { libraryThreads } = require(${JSON.stringify(require.resolve('@vbi/server/hsm/token-threads'))});
      const { CryptoModule } = require(${JSON.stringify(require.resolve('@vbi/server/hsm/crypto-module'))});
      const open = () => openLibrary(${JSON.stringify(testLibrary().path)}, process.env.SOFTHSM2_CONF, process.env.PKCS11_PROFILE || undefined);
      const start = (lib) => CryptoModule.start({ library: lib, module: { tokenLabel: ${JSON.stringify(label)}, userPin: ${JSON.stringify(TEST_USER_PIN)}, userType: 1 },
        hsm: ${JSON.stringify(hsmConfig('aes'))} });
      (async () => {
        const lib = open();
        const finalize = lib.module.finalize.bind(lib.module);
        let atFinalize = -1;
        lib.module.finalize = () => { atFinalize = libraryThreads(lib.module).running; finalize(); };
        // threads running; closed and opened again before the close is done: not finalised, new threads
        let m = await start(lib);
        await Promise.all([1, 2, 3].map(() => m.identitySign(Buffer.alloc(32, 1))));
        await m.close();
        const closing = closeLibrary(lib);
        const again = open();
        await closing;
        m = await start(again);
        const sig = await m.identitySign(Buffer.alloc(32, 2));
        await m.close();
        const before = libraryThreads(lib.module).running;
        await closeLibrary(again);
        console.log(JSON.stringify({ reopenedSigned: sig.length, threadsBefore: before, threadsAtFinalize: atFinalize }));
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000, env: process.env });
    expect(r.status, r.stderr).to.equal(0);
    const out = JSON.parse(r.stdout.trim());
    expect(out.threadsAtFinalize, 'token threads still running at C_Finalize').to.equal(0);
    expect(out.reopenedSigned).to.equal(64);
    expect(out.threadsBefore).to.be.greaterThan(0);
  });

  it('a program that used the token exits by itself (idle threads keep nothing alive)', () => {
    const script = `
      const { openLibrary } = require(${JSON.stringify(require.resolve('@vbi/server/hsm/pkcs11-library'))});
      const { CryptoModule } = require(${JSON.stringify(require.resolve('@vbi/server/hsm/crypto-module'))});
      const lib = openLibrary(${JSON.stringify(testLibrary().path)}, process.env.SOFTHSM2_CONF, process.env.PKCS11_PROFILE || undefined);
      CryptoModule.start({ library: lib, module: { tokenLabel: ${JSON.stringify(label)}, userPin: ${JSON.stringify(TEST_USER_PIN)}, userType: 1 },
        hsm: ${JSON.stringify(hsmConfig('aes'))} })
        .then((m) => m.identitySign(Buffer.alloc(32, 1)))
        .then((sig) => console.log('signed', sig.length));`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000, env: process.env });
    expect(r.error, `the program did not exit by itself: ${r.stdout} ${r.stderr}`).to.equal(undefined);
    expect(r.stdout.trim(), r.stderr).to.equal('signed 64');
    expect(r.status).to.equal(0);
  });
});
