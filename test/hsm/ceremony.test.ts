import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as graphene from 'graphene-pk11';
import { cloneSharedKeys, generateModuleKeys, initToken, tokenKeyReport } from '@vbi/server/hsm/key-ceremony';
import { findSlotByLabel } from '@vbi/server/hsm/pkcs11-library';
import { KEY_ROLES, SHARED_ROLES, roleAttributes, roleLabel, roleSpec, isSecretRole } from '@vbi/server/hsm/key-templates';
import { isVbiError } from '@vbi/core/errors';
import { rsaOaep } from '@vbi/server/hsm/mechanisms';
import { newPackage } from '@vbi/core/psd/psd-package';
import { openPackage, sealPackage } from '@vbi/server/module/package-seal';
import { TEST_SO_PIN, TEST_USER_PIN, provisionToken, requireFreeSlots, startModule, testLibrary, uniqueLabel } from '../helpers/hsm';

const run = promisify(execFile);
const CLI = require.resolve('@vbi/server/bin/ceremony');

describe('key ceremony', () => {
  const a = uniqueLabel('cer-a');
  const b = uniqueLabel('cer-b');
  before(async () => {
    await provisionToken(a);
    await provisionToken(b, 'aes', false);
  });

  it('refuses to initialise an initialised token without force', async function () {
    requireFreeSlots(this);
    const err = await initToken({ library: testLibrary(), label: a, soPin: TEST_SO_PIN, userPin: TEST_USER_PIN }).then(() => null, (e) => e);
    expect(isVbiError(err, 'TOKEN_ALREADY_INITIALIZED'), String(err)).to.equal(true);
  });

  it('generates every module key with exactly the attributes its template declares (read back)', async () => {
    const keys = await tokenKeyReport({ library: testLibrary(), label: a, userPin: TEST_USER_PIN, suite: 'aes' });
    for (const role of KEY_ROLES) {
      const spec = roleSpec(role);
      const mine = keys.filter((k) => k.role === role);
      expect(mine, role).to.have.length(isSecretRole(spec) ? 1 : 2);
      for (const k of mine) {
        // the role's template as the token's profile shapes it (attributes left out, shared keys non-extractable)
        const want = roleAttributes(role, k.class, testLibrary().profile);
        for (const [name, value] of Object.entries(want)) {
          expect(k.attributes[name], `${role} ${k.class} ${name}`).to.equal(value);
        }
        expect(k.weaknesses, `${role} ${k.class}`).to.deep.equal([]);
      }
      if (isSecretRole(spec)) expect(mine[0].kcv).to.match(/^[0-9a-f]{6}$/);
    }
  });

  it('the Crypto-User login cannot delete or weaken a long-term key', async () => {
    const slot = findSlotByLabel(testLibrary(), a);
    const s = slot.open(graphene.SessionFlag.SERIAL_SESSION | graphene.SessionFlag.RW_SESSION);
    try {
      s.login(TEST_USER_PIN, graphene.UserType.USER);
      const kek = s.find({ class: graphene.ObjectClass.SECRET_KEY, label: roleLabel('package-kek') }).items(0);
      expect(() => kek.destroy()).to.throw();
      expect(() => kek.setAttribute({ extractable: false })).to.throw();
      expect(s.find({ label: roleLabel('package-kek') }).length).to.equal(1);
      // an extractable package key still cannot be wrapped under a key the SO did not trust
      const kp = s.generateKeyPair(graphene.KeyGenMechanism.RSA,
        { keyType: graphene.KeyType.RSA, token: false, modulusBits: 2048, publicExponent: Buffer.from([1, 0, 1]), wrap: true },
        { keyType: graphene.KeyType.RSA, token: false, private: true, unwrap: true });
      // (or, where the profile keeps the package keys non-extractable, cannot be wrapped at all)
      const refusal = testLibrary().profile.sharedKeysExtractable ? /CKR_KEY_NOT_WRAPPABLE/ : /CKR_KEY_UNEXTRACTABLE|CKR_KEY_NOT_WRAPPABLE/;
      expect(() => s.wrapKey(rsaOaep(testLibrary().profile.oaepHash), kp.publicKey, kek.toType<graphene.SecretKey>())).to.throw(refusal);
    } finally {
      s.logout();
      s.close();
    }
  });

  it('clones the shared package keys; KCVs match and each module opens the other\'s packages', async function () {
    if (!testLibrary().profile.sharedKeysExtractable) this.skip(); // the profile refuses clone
    const r = await cloneSharedKeys({
      suite: 'aes',
      from: { library: testLibrary(), label: a, soPin: TEST_SO_PIN, userPin: TEST_USER_PIN },
      to: { library: testLibrary(), label: b, soPin: TEST_SO_PIN, userPin: TEST_USER_PIN },
    });
    for (const role of SHARED_ROLES) {
      const ka = r.from.find((k) => k.role === role);
      const kb = r.to.find((k) => k.role === role);
      expect(kb?.kcv, role).to.equal(ka?.kcv);
      expect(kb?.weaknesses).to.deep.equal([]);
      expect(kb?.attributes.extractable).to.equal(true);
      expect(kb?.attributes.wrapWithTrusted).to.equal(true);
    }
    // no trusted transport key is left behind on the source token
    const left = r.from.filter((k) => k.label.startsWith('vbi.clone.'));
    expect(left).to.deep.equal([]);
    // b still needs its own identity and transport keys before it can run as a module
    await generateModuleKeys({ library: testLibrary(), label: b, soPin: TEST_SO_PIN, userPin: TEST_USER_PIN, suite: 'aes', roles: ['module-identity', 'module-transport'] });
    const ma = await startModule(a);
    const mb = await startModule(b);
    try {
      const pkgA = await sealPackage(ma, newPackage({ meterId: 'M-CLONE-1', maxDescendingRegister: 500_000 }));
      const pkgB = await sealPackage(mb, newPackage({ meterId: 'M-CLONE-2', maxDescendingRegister: 500_000 }));
      expect((await openPackage(mb, pkgA, 'M-CLONE-1')).maxDescendingRegister).to.equal(500_000);
      expect((await openPackage(ma, pkgB, 'M-CLONE-2')).meterId).to.equal('M-CLONE-2');
    } finally {
      await ma.close();
      await mb.close();
    }
  });

  it('refuses to clone into a token that already holds package keys', async function () {
    if (!testLibrary().profile.sharedKeysExtractable) this.skip();
    const err = await cloneSharedKeys({
      suite: 'aes',
      from: { library: testLibrary(), label: a, soPin: TEST_SO_PIN, userPin: TEST_USER_PIN },
      to: { library: testLibrary(), label: b, soPin: TEST_SO_PIN, userPin: TEST_USER_PIN },
    }).then(() => null, (e) => e);
    expect(isVbiError(err, 'KEY_EXISTS'), String(err)).to.equal(true);
  });

  describe('the CLI, in its own process and token directory', () => {
    let dir: string;
    let env: NodeJS.ProcessEnv;
    before(function () {
      requireFreeSlots(this);
      dir = mkdtempSync(join(process.env.VBI_TEST_ROOT as string, 'cli-'));
      mkdirSync(join(dir, 'tokens'));
      writeFileSync(join(dir, 'softhsm2.conf'), `directories.tokendir = ${join(dir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`);
      env = {
        ...process.env, SOFTHSM2_CONF: join(dir, 'softhsm2.conf'), VBI_VAR_DIR: dir,
        VBI_SO_PIN: 'cli-officer-pin-77', PKCS11_USER_PIN: 'cli-user-pin-55',
        VBI_SO_PIN_FROM: 'cli-officer-pin-77', PKCS11_USER_PIN_FROM: 'cli-user-pin-55', VBI_SO_PIN_TO: 'cli-officer-pin-77', PKCS11_USER_PIN_TO: 'cli-user-pin-55',
      };
    });
    after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

    const cli = (...args: string[]) => run(process.execPath, [CLI, ...args], { env }).then(
      (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout, err: e.stderr }),
    );

    it('init-token, generate (KCVs printed, transcript without PINs), status, and a refused second init', async () => {
      const init = await cli('init-token', '--label', 'cli-module', '--officer', 'O. Fficer');
      expect(init.code, init.err).to.equal(0);
      const gen = await cli('generate', '--label', 'cli-module', '--officer', 'O. Fficer');
      expect(gen.code, gen.err).to.equal(0);
      expect(gen.out).to.match(/vbi\.package\.kek\s+secret\s+AES\s+KCV [0-9a-f]{6}/);
      const status = await cli('status', '--label', 'cli-module');
      expect(status.code, status.out).to.equal(0);
      expect(status.out).to.contain('no weak attributes');
      const again = await cli('init-token', '--label', 'cli-module');
      expect(again.code).to.equal(1);
      expect(again.err).to.contain('TOKEN_ALREADY_INITIALIZED');

      const files = readdirSync(join(dir, 'ceremony'));
      const gt = files.find((f) => f.includes('-generate-'));
      expect(gt, files.join(',')).to.be.a('string');
      const text = readFileSync(join(dir, 'ceremony', gt as string), 'utf8');
      const t = JSON.parse(text);
      expect(t.officer).to.equal('O. Fficer');
      expect(t.tokens[0].serial).to.match(/^[0-9a-f]{16}$/);
      expect(t.keys.filter((k: { kcv?: string }) => k.kcv)).to.have.length(3);
      for (const f of files) {
        const body = readFileSync(join(dir, 'ceremony', f), 'utf8');
        expect(body).not.to.contain('cli-officer-pin-77');
        expect(body).not.to.contain('cli-user-pin-55');
      }
    });

    it('an off-site module: generate --own-keys makes only identity and transport keys, clone adds the shared ones; a second --own-keys is KEY_EXISTS', async function () {
      if (!testLibrary().profile.sharedKeysExtractable) this.skip();
      expect((await cli('init-token', '--label', 'cli-offsite')).code).to.equal(0);
      const own = await cli('generate', '--label', 'cli-offsite', '--officer', 'O. Fficer', '--own-keys');
      expect(own.code, own.err).to.equal(0);
      expect(own.out).to.match(/vbi\.module\.identity/);
      expect(own.out).not.to.match(/vbi\.package\./);
      const cloned = await cli('clone', '--from', 'cli-module', '--to', 'cli-offsite', '--officer', 'O. Fficer');
      expect(cloned.code, cloned.err).to.equal(0);
      const status = await cli('status', '--label', 'cli-offsite', '--json');
      const roles = [...new Set((JSON.parse(status.out) as { keys: Array<{ role: string | null }> }).keys.map((k) => k.role).filter(Boolean))].sort();
      expect(roles).to.deep.equal([...KEY_ROLES].sort());
      const again = await cli('generate', '--label', 'cli-offsite', '--officer', 'O. Fficer', '--own-keys');
      expect(again.code).to.equal(1);
      expect(again.err).to.contain('KEY_EXISTS');
    });
  });
});
