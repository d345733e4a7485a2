import { expect } from 'chai';
import { constants, createPublicKey, publicEncrypt, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import * as graphene from 'graphene-pk11';
import { listProfiles, loadProfile, parseProfile } from '@vbi/server/hsm/token-profile';
import { CKM_AES_KEY_WRAP_KWP, CKM_AES_KEY_WRAP_PAD, mechanismHex } from '@vbi/server/hsm/mechanisms';
import { runCeremony } from '@vbi/server/bin/ceremony';
import { CryptoModule } from '@vbi/server/hsm/crypto-module';
import { generateModuleKeys, initToken, takeOwnership, cloneSharedKeys } from '@vbi/server/hsm/key-ceremony';
import { probeWithProfiles } from '@vbi/server/hsm/probe-ceremony';
import { findSlotByLabel } from '@vbi/server/hsm/pkcs11-library';
import { isVbiError } from '@vbi/core/errors';
import { TEST_SO_PIN, TEST_USER_PIN, hsmConfig, provisionToken, requireFreeSlots, startModule, testLibrary, uniqueLabel, withTestProfile } from '../helpers/hsm';
import { ledgerFixture, testConfig } from '../helpers/ledger';
import { freshDatabase } from '../helpers/db';
import { createService } from '@vbi/server/service';

/**
 * A profile variant under which the token leaves unwrapped keys readable: CKA_SENSITIVE and
 * CKA_EXTRACTABLE=false left out of unwrap templates (a token's defaults then apply, as on a
 * token that ignores them), and no restriction after the unwrap.
 */
function weakUnwrap(): { unwrapOmit: string[]; unwrapRestrict: boolean } {
  return { unwrapOmit: [...testLibrary().profile.unwrapOmit, 'sensitive', 'extractable=false'], unwrapRestrict: false };
}

/** A 32-byte HMAC key imported under a user-secrets key, as registration does. */
async function wrapHmacKey(m: CryptoModule, userSecrets: Buffer): Promise<Buffer> {
  const spki = m.transportPublicKey();
  const ct = publicEncrypt({ key: createPublicKey({ key: spki, format: 'der', type: 'spki' }), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: testLibrary().profile.oaepHash }, randomBytes(32));
  return m.importClientSecret({ ciphertext: ct, usage: 'hmac', under: [{ wrapped: userSecrets, usage: 'wrap' }] });
}

/** What the ceremony CLI prints and returns, run in this process on the test library. */
async function ceremony(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  const code = await runCeremony(args, {
    ...process.env, VBI_SO_PIN: TEST_SO_PIN, PKCS11_USER_PIN: TEST_USER_PIN, VBI_VAR_DIR: mkdtempSync(join(tmpdir(), 'vbi-cer-')), ...env,
  }, (s) => lines.push(s)).catch((e) => { lines.push(String(e)); return 99; });
  return { code, out: lines.join('\n') };
}

describe('token profiles: selection, probe, unwrap attributes, vendor-initialised tokens', function () {
  this.timeout(120_000);

  describe('profile files', () => {
    it('every shipped profile parses; SoftHSM2 is chosen by its library path, others by name', () => {
      const names = listProfiles().map((p) => p.name);
      expect(names).to.include.members(['softhsm2', 'luna', 'nshield', 'yubihsm2', 'opencryptoki']);
      expect(loadProfile(undefined, '/usr/lib/softhsm/libsofthsm2.so').name).to.equal('softhsm2');
      expect(loadProfile('luna', '/any/lib.so').wrapMechanism).to.equal(CKM_AES_KEY_WRAP_KWP);
      expect(loadProfile('nshield', '/any/lib.so').serialSource).to.equal('identity-key');
    });

    it('a library no profile matches, an unknown name and a malformed field are refused with CONFIG_INVALID', () => {
      expect(() => loadProfile(undefined, '/opt/vendor/libunknown.so')).to.throw(/PKCS11_PROFILE is not set/);
      expect(() => loadProfile('no-such', '/x.so')).to.throw(/no token profile 'no-such'/);
      const good = JSON.parse(JSON.stringify({ ...listProfiles()[0], wrapMechanism: mechanismHex(CKM_AES_KEY_WRAP_PAD) }));
      expect(() => parseProfile({ ...good, wrapMechanism: CKM_AES_KEY_WRAP_PAD }, 't')).to.throw(/wrapMechanism/);
      expect(() => parseProfile({ ...good, provisioning: 'magic' }, 't')).to.throw(/provisioning must be one of/);
      expect(() => parseProfile({ ...good, pin: { min: 9, max: 4 } }, 't')).to.throw(/pin/);
      const dir = mkdtempSync(join(tmpdir(), 'vbi-prof-'));
      writeFileSync(join(dir, 'mine.json'), JSON.stringify({ ...good, name: 'mine' }));
      expect(loadProfile(join(dir, 'mine.json'), '/x.so').name).to.equal('mine');
    });
  });

  describe('ceremony probe on SoftHSM2', () => {
    const label = uniqueLabel('probe');
    before(() => provisionToken(label));

    it('passes every required check with exact results and names the fitting profile', async () => {
      const own = testLibrary().profile;
      const r = await ceremony(['probe', '--label', label]);
      expect(r.code, r.out).to.equal(0);
      expect(r.out).to.contain(`profile '${own.name}' fits this token`);
      for (const check of ['mechanisms', 'long-term key attributes', 'CKA_WRAP_WITH_TRUSTED', 'package suite aes',
        'indicium key EC P-256', `client secret by RSA-OAEP (${own.oaepHash})`, 'private data objects', 'module serial']) {
        expect(r.out).to.match(new RegExp(`ok +${check.replace(/[()]/g, '\\$&')}`), check);
      }
      if (own.wrapWithTrusted === 'enforced') expect(r.out).to.match(/wrapping under an untrusted key refused: CKR_KEY_NOT_WRAPPABLE/);
      expect(r.out).to.match(new RegExp(`shipped profiles that fit: .*\\b${own.name}\\b`));
    });

    it("a profile that does not fit fails with the token's CKR codes, and the probe names the profiles that fit", async () => {
      // a profile for another vendor's token: another manufacturer, a wrap mechanism this token lacks
      const bogus = 0x8000f00d;
      await withTestProfile({ wrapMechanism: bogus, match: { manufacturerID: '^Thales' } }, async (library) => {
        const p = await probeWithProfiles({ library, label, userPin: TEST_USER_PIN, suite: 'aes', wrapMechanism: bogus, oaepHash: library.profile.oaepHash });
        expect(p.report.ok).to.equal(false);
        const failed = p.report.checks.filter((c) => !c.ok && c.required);
        expect(failed.map((c) => c.name)).to.include.members(['profile matches the token', 'mechanisms']);
        expect(failed.find((c) => c.name === 'mechanisms')?.detail).to.match(/0x8000f00d .*not offered/);
        expect(failed.find((c) => c.name.startsWith('indicium key EC'))?.ckr).to.match(/^CKR_MECHANISM_INVALID \(0x70\)$/);
        expect(p.fitting).to.include(testLibrary().profile.name);
      });
    });
  });

  describe('what the token makes of an unwrap template is checked', () => {
    const label = uniqueLabel('unwrap');
    before(() => provisionToken(label));

    it('a token that leaves unwrapped keys readable (CKA_SENSITIVE / CKA_EXTRACTABLE ignored) is refused at start', async () => {
      // A profile that keeps sensitive/extractable out of unwrap templates: SoftHSM2 then makes
      // unwrapped keys non-sensitive, as a token that ignores the attributes would.
      const m = await withTestProfile(weakUnwrap(), (library) => CryptoModule.start({
        library, module: { tokenLabel: label, userPin: TEST_USER_PIN, userType: 1 }, hsm: hsmConfig('aes'),
      }));
      try {
        expect(m.status().state).to.equal('Error');
        expect(m.unsuitable).to.match(/CKA_SENSITIVE=false where the template asks true/);
        expect(m.status().probe?.checks.find((c) => c.name.startsWith('indicium key EC'))?.ok).to.equal(false);
      } finally {
        await m.close();
      }
    });

    it('with unwrapRestrict the service sets the attributes right after the unwrap, and the token is usable', async () => {
      const m = await withTestProfile({ ...weakUnwrap(), unwrapRestrict: true }, async (library) => {
        const mod = await CryptoModule.start({ library, module: { tokenLabel: label, userPin: TEST_USER_PIN, userType: 1 }, hsm: hsmConfig('aes') });
        try {
          const wrapped = await mod.generateWrappedSecretKey();
          const mac = await mod.hmac({ keyChain: [{ wrapped, usage: 'wrap' }, { wrapped: await wrapHmacKey(mod, wrapped), usage: 'hmac' }], data: Buffer.from('x') });
          expect(mac.length).to.equal(32);
        } catch (e) {
          await mod.close();
          throw e;
        }
        return mod;
      });
      try {
        expect(m.status().state, m.status().reason).to.equal('Idle');
        expect(m.status().probe?.ok).to.equal(true);
      } finally {
        await m.close();
      }
    });

    it('the service refuses to start on such a token (TOKEN_UNSUITABLE with the probe\'s reason)', async () => {
      const db = await freshDatabase();
      try {
        const err = await withTestProfile(weakUnwrap(), () => createService({ config: testConfig([label]), db }))
          .then((svc) => svc.close().then(() => null), (e: unknown) => e);
        expect(isVbiError(err, 'TOKEN_UNSUITABLE'), String(err)).to.equal(true);
        expect(String((err as Error).message)).to.match(/CKA_SENSITIVE=false/);
      } finally {
        await db.close();
      }
    });

    it('a weak unwrap during service takes the module to Error (KEY_ATTRIBUTES_WEAK) and destroys the key', async () => {
      const m = await startModule(label);
      try {
        expect(m.status().state).to.equal('Idle');
        const wrapped = await m.generateWrappedSecretKey();
        await withTestProfile(weakUnwrap(), async () => {
          const err = await m.hmac({ keyChain: [{ wrapped, usage: 'wrap' }], data: Buffer.from('x') }).then(() => null, (e: unknown) => e);
          expect(isVbiError(err, 'KEY_ATTRIBUTES_WEAK'), String(err)).to.equal(true);
        });
        expect(m.status().state).to.equal('Error');
        const after = await m.mac(Buffer.from('x')).then(() => null, (e: unknown) => e);
        expect(isVbiError(after, 'MODULE_ERROR'), String(after)).to.equal(true);
      } finally {
        await m.close();
      }
    });

    it('the clone ceremony fails (no "KCVs match") when the copied keys come out weak', async function () {
      if (!testLibrary().profile.sharedKeysExtractable) this.skip(); // no clone on this token
      const to = uniqueLabel('clone-weak');
      await provisionToken(to, 'aes', false);
      const err = await withTestProfile({ ...weakUnwrap(), unwrapOmit: [...testLibrary().profile.unwrapOmit, 'sensitive'] }, (library) => cloneSharedKeys({
        suite: 'aes',
        from: { library, label, soPin: TEST_SO_PIN, userPin: TEST_USER_PIN },
        to: { library, label: to, soPin: TEST_SO_PIN, userPin: TEST_USER_PIN },
      })).then(() => null, (e: unknown) => e);
      expect(isVbiError(err, 'KEY_ATTRIBUTES_WEAK'), String(err)).to.equal(true);
    });
  });

  describe('a template error fails one request, not the module', () => {
    it('meter creation refused by the token (HSM_OPERATION_REFUSED) leaves the module in rotation and serving', async () => {
      let fault = false;
      // CKA_VALUE_LEN on an EC private key template: the token refuses the template
      const f = await ledgerFixture({ moduleFaults: { indiciumTemplateFault: () => (fault ? { valueLen: 32 } : undefined) } });
      try {
        await f.newMeter(1_000_000);
        fault = true;
        const err = await f.newMeter(1_000_000).then(() => null, (e: unknown) => e);
        expect(isVbiError(err, 'HSM_OPERATION_REFUSED'), String(err)).to.equal(true);
        expect(f.service.ledger.rotation().every((r) => r.inRotation)).to.equal(true);
        expect(f.service.engines[0].hsm.status().state).to.be.oneOf(['Idle', 'User']);
        fault = false;
        const again = await f.newMeter(1_000_000);
        expect(again.meterId).to.be.a('string');
      } finally {
        await f.service.close();
        await f.db.close();
      }
    });
  });

  describe('vendor-initialised tokens (take-ownership)', () => {
    it('changes the factory SO PIN and sets the user PIN without C_InitToken; the factory PIN is refused after', async function () {
      requireFreeSlots(this); // the "vendor" below initialises a free slot
      const label = uniqueLabel('vendor');
      const factory = 'factory-so-1234';
      // the "vendor": a token initialised beforehand with a factory SO PIN and no user PIN
      const lib = testLibrary();
      const free = lib.module.getSlots(true);
      let slot: graphene.Slot | undefined;
      for (let i = 0; i < free.length; i++) if (!(free.items(i).getToken().flags & graphene.TokenFlag.TOKEN_INITIALIZED)) slot = free.items(i);
      slot!.lib.C_InitToken(slot!.handle, factory, label.padEnd(32, ' '));
      const serialBefore = findSlotByLabel(lib, label).getToken().serialNumber.trim();

      const short = await ceremony(['take-ownership', '--label', label, '--officer', 'A. Officer'], { VBI_FACTORY_SO_PIN: factory, VBI_SO_PIN: 'abc' });
      expect(short.code).to.not.equal(0);
      expect(short.out).to.match(/the new SO PIN must be 4 to 255 characters/);

      const r = await ceremony(['take-ownership', '--label', label, '--officer', 'A. Officer'], { VBI_FACTORY_SO_PIN: factory });
      expect(r.code, r.out).to.equal(0);
      expect(r.out).to.match(/factory PIN is refused/);
      expect(findSlotByLabel(lib, label).getToken().serialNumber.trim()).to.equal(serialBefore);
      // the factory PIN no longer logs in, the new SO PIN does, the service PIN works
      const s = findSlotByLabel(lib, label).open(graphene.SessionFlag.SERIAL_SESSION | graphene.SessionFlag.RW_SESSION);
      try {
        expect(() => s.login(factory, graphene.UserType.SO)).to.throw(/CKR_PIN_INCORRECT/);
      } finally {
        s.close();
      }
      await generateModuleKeys({ library: lib, label, soPin: TEST_SO_PIN, userPin: TEST_USER_PIN, suite: 'aes' });
      const m = await startModule(label);
      try {
        expect(m.status().state).to.equal('Idle');
      } finally {
        await m.close();
      }
      const again = await takeOwnership({ library: lib, label, factorySoPin: factory, soPin: TEST_SO_PIN, userPin: TEST_USER_PIN }).then(() => null, (e: unknown) => e);
      expect(isVbiError(again, 'PIN_INCORRECT'), String(again)).to.equal(true);
    });

    it('init-token is refused on a profile whose tokens come vendor-initialised', async () => {
      const err = await withTestProfile({ provisioning: 'vendor-initialised' }, async (library) => {
        return initToken({ library, label: uniqueLabel('noinit'), soPin: TEST_SO_PIN, userPin: TEST_USER_PIN }).then(() => null, (e: unknown) => e);
      });
      expect(String(err)).to.match(/take-ownership/);
    });
  });

  describe('module serial', () => {
    it('with serialSource identity-key the serial is derived from the identity key, same on every start', async () => {
      const label = uniqueLabel('serial');
      await provisionToken(label);
      const start = () => withTestProfile({ serialSource: 'identity-key' }, (library) => CryptoModule.start({
        library, module: { tokenLabel: label, userPin: TEST_USER_PIN, userType: 1 }, hsm: hsmConfig('aes'),
      }));
      const a = await start();
      const b = await start();
      try {
        expect(a.serial).to.match(/^[0-9A-F]{16}$/);
        expect(b.serial).to.equal(a.serial);
        expect(a.serial).to.not.equal(findSlotByLabel(testLibrary(), label).getToken().serialNumber.trim());
      } finally {
        await a.close();
        await b.close();
      }
    });
  });

  it('a module token whose package KEK is exportable (made outside the ceremony) is refused at start', async () => {
    const label = uniqueLabel('weak-kek');
    await provisionToken(label, 'aes', false);
    await generateModuleKeys({ library: testLibrary(), label, soPin: TEST_SO_PIN, userPin: TEST_USER_PIN, suite: 'aes', roles: ['package-enc', 'package-mac', 'module-identity', 'module-transport'] });
    const s = findSlotByLabel(testLibrary(), label).open(graphene.SessionFlag.SERIAL_SESSION | graphene.SessionFlag.RW_SESSION);
    try {
      s.login(TEST_USER_PIN, graphene.UserType.USER);
      s.generateKey(graphene.KeyGenMechanism.AES, {
        class: graphene.ObjectClass.SECRET_KEY, keyType: graphene.KeyType.AES, valueLen: 32, label: 'vbi.package.kek',
        token: true, private: true, sensitive: true, extractable: true, wrap: true, unwrap: true,
      });
      s.logout();
    } finally {
      s.close();
    }
    const m = await startModule(label);
    try {
      expect(m.status().state).to.equal('Error');
      expect(m.unsuitable).to.match(/package-kek: extractable without CKA_WRAP_WITH_TRUSTED/);
    } finally {
      await m.close();
    }
  });

  it('generate sets CKA_COPYABLE=false on every long-term key (read back)', async () => {
    const label = uniqueLabel('copyable');
    await provisionToken(label);
    const r = await ceremony(['status', '--label', label, '--json']);
    const keys = JSON.parse(r.out.slice(r.out.indexOf('{'))).keys as Array<{ class: string; attributes: Record<string, boolean> }>;
    const longTerm = keys.filter((k) => k.class !== 'public');
    expect(longTerm.length).to.be.greaterThan(0);
    for (const k of longTerm) expect(k.attributes.copyable).to.equal(false);
  });

});
