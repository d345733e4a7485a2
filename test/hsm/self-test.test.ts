import { expect } from 'chai';
import { createCipheriv, createHash, createHmac, createPublicKey, verify } from 'node:crypto';
import { KAT_VECTORS, KatVectors } from '@vbi/server/hsm/self-test';
import { TEST_USER_PIN, hsmConfig, provisionToken, startModule, uniqueLabel, withTestProfile } from '../helpers/hsm';
import { CryptoModule } from '@vbi/server/hsm/crypto-module';
import { isVbiError } from '@vbi/core/errors';
import { MODULE_STATES } from '@vbi/server/hsm/module-state';

describe('module power-on self-tests and state machine', () => {
  const label = uniqueLabel('selftest');
  const legacy = uniqueLabel('selftest-3des');
  before(async () => {
    await provisionToken(label);
    await provisionToken(legacy, 'legacy-3des');
  });

  it("runs the aes suite's known-answer tests and the pairwise tests, no 3DES, and goes Idle", async () => {
    const m = await startModule(label);
    try {
      const st = m.status();
      expect(st.state).to.equal('Idle');
      expect(st.selfTest?.ok).to.equal(true);
      expect(st.selfTest?.results.map((r) => r.name)).to.have.members([
        'KAT AES-256-GCM', 'KAT AES-256-CMAC', 'KAT AES key wrap with padding (RFC 5649)', 'KAT SHA-256', 'KAT HMAC-SHA256',
        'pairwise EC P-256 sign/verify', 'KAT RSA-2048 PKCS#1 v1.5 SHA-256 verify', 'pairwise RSA-2048 sign/verify',
      ]);
      expect(st.selfTest?.keyImport).to.equal('create-object');
      expect(MODULE_STATES).to.include(st.state);
    } finally {
      await m.close();
    }
  });

  it("runs the legacy-3des suite's tests (3DES-CBC, DES3-CMAC), not the AES-GCM/CMAC ones", async () => {
    const m = await startModule(legacy, 'legacy-3des');
    try {
      expect(m.status().state).to.equal('Idle');
      const names = m.status().selfTest?.results.map((r) => r.name) ?? [];
      expect(names).to.include.members(['KAT 3DES-CBC', 'KAT DES3-CMAC', 'KAT AES key wrap with padding (RFC 5649)']);
      expect(names).to.not.include.members(['KAT AES-256-GCM']);
      expect(names).to.not.include('KAT AES-256-CMAC');
    } finally {
      await m.close();
    }
  });

  // One corrupted vector per mechanism family: each alone must put the module into Error.
  const corruptions: Array<[string, (v: KatVectors) => void, string, 'aes' | 'legacy-3des']> = [
    ['AES-GCM ciphertext', (v) => { v.aesGcm.ciphertextAndTag = flipHex(v.aesGcm.ciphertextAndTag); }, 'KAT AES-256-GCM', 'aes'],
    ['AES-CMAC', (v) => { v.aesCmac.mac = flipHex(v.aesCmac.mac); }, 'KAT AES-256-CMAC', 'aes'],
    ['3DES-CBC', (v) => { v.des3Cbc.ciphertext = flipHex(v.des3Cbc.ciphertext); }, 'KAT 3DES-CBC', 'legacy-3des'],
    ['DES3-CMAC', (v) => { v.des3Cmac.mac = flipHex(v.des3Cmac.mac); }, 'KAT DES3-CMAC', 'legacy-3des'],
    ['SHA-256', (v) => { v.sha256.digest = flipHex(v.sha256.digest); }, 'KAT SHA-256', 'aes'],
    ['key wrap', (v) => { v.aesKeyWrapPad.wrapped = flipHex(v.aesKeyWrapPad.wrapped); }, 'KAT AES key wrap with padding', 'aes'],
    ['HMAC-SHA256', (v) => { v.hmacSha256.mac = flipHex(v.hmacSha256.mac); }, 'KAT HMAC-SHA256', 'aes'],
  ];
  for (const [what, corrupt, testName, suite] of corruptions) {
    it(`a corrupted ${what} vector puts the ${suite} module into Error and every command is refused`, async () => {
      const vectors = structuredClone(KAT_VECTORS);
      corrupt(vectors);
      const m = await startModule(suite === 'aes' ? label : legacy, suite, { vectors });
      try {
        const st = m.status();
        expect(st.state).to.equal('Error');
        expect(st.reason).to.contain(testName);
        expect(st.selfTest?.results.filter((r) => !r.ok).map((r) => r.name)).to.have.length(1);
        for (const call of [() => m.mac(Buffer.from('x')), () => m.identitySign(Buffer.from('x')), () => m.listDataObjects('')]) {
          const err = await call().then(() => null, (e: unknown) => e);
          expect(isVbiError(err, 'MODULE_ERROR'), String(err)).to.equal(true);
        }
        expect(() => m.identityPublicKey()).to.throw(/Error/);
      } finally {
        await m.close();
      }
    });
  }

  it('a corrupted 3DES vector does not touch an aes module: 3DES is not tested there', async () => {
    const vectors = structuredClone(KAT_VECTORS);
    vectors.des3Cbc.ciphertext = flipHex(vectors.des3Cbc.ciphertext);
    const m = await startModule(label, 'aes', { vectors });
    try {
      expect(m.status().state).to.equal('Idle');
    } finally {
      await m.close();
    }
  });

  it('a failed optional RSA-2048 test disables RSA-2048 indicium keys only; EC meters keep working', async () => {
    const vectors = structuredClone(KAT_VECTORS);
    vectors.rsaPkcs1Sha256.signature = flipHex(vectors.rsaPkcs1Sha256.signature);
    const m = await startModule(label, 'aes', { vectors });
    try {
      const st = m.status();
      expect(st.state).to.equal('Idle');
      expect(st.selfTest?.ok).to.equal(true);
      expect(st.selfTest?.disabled).to.deep.equal(['rsa-2048']);
      expect(st.selfTest?.results.find((r) => !r.ok)?.name).to.equal('KAT RSA-2048 PKCS#1 v1.5 SHA-256 verify');
      const err = await m.generateIndiciumKey({ algorithm: 'rsa-2048' }).then(() => null, (e: unknown) => e);
      expect(isVbiError(err, 'ALGORITHM_DISABLED'), String(err)).to.equal(true);
      const ec = await m.generateIndiciumKey({ algorithm: 'ec-p256' });
      const sig = await m.signWithWrappedKey({ wrappedKey: ec.wrappedKey, algorithm: 'ec-p256', data: Buffer.from('x') });
      expect(sig.length).to.equal(64);
    } finally {
      await m.close();
    }
  });

  describe('on a token that refuses clear keys (profile clearKeyImport false, FIPS mode)', () => {
    const startFips = (vectors = KAT_VECTORS) => withTestProfile({ clearKeyImport: false }, (library) => CryptoModule.start({
      library, module: { tokenLabel: label, userPin: TEST_USER_PIN, userType: 1 }, hsm: hsmConfig('aes'), vectors,
    }).then(async (m) => { const st = m.status(); await m.close(); return st; }));

    it('the known keys reach the token by RSA-OAEP unwrap, every aes-suite test passes, no 3DES', async () => {
      const st = await startFips();
      expect(st.state).to.equal('Idle');
      expect(st.selfTest?.keyImport).to.equal('rsa-oaep-unwrap');
      expect(st.selfTest?.results.every((r) => r.ok)).to.equal(true);
      expect(st.selfTest?.results.map((r) => r.name)).to.include.members(['KAT AES-256-GCM', 'KAT AES-256-CMAC', 'KAT HMAC-SHA256', 'KAT AES key wrap with padding (RFC 5649)']);
      expect(st.selfTest?.results.map((r) => r.name).some((n) => /3DES|DES3/.test(n))).to.equal(false);
    });

    it('a corrupted AES-CMAC vector still puts the module into Error (the unwrapped keys are the known ones)', async () => {
      const vectors = structuredClone(KAT_VECTORS);
      vectors.aesCmac.mac = flipHex(vectors.aesCmac.mac);
      const st = await startFips(vectors);
      expect(st.state).to.equal('Error');
      expect(st.reason).to.contain('KAT AES-256-CMAC');
    });
  });

  it("the vectors agree with Node's OpenSSL (independent of the token)", () => {
    const v = KAT_VECTORS;
    const gcm = createCipheriv('aes-256-gcm', Buffer.from(v.aesGcm.key, 'hex'), Buffer.from(v.aesGcm.iv, 'hex'));
    gcm.setAAD(Buffer.from(v.aesGcm.aad, 'hex'));
    const ct = Buffer.concat([gcm.update(Buffer.from(v.aesGcm.plaintext, 'hex')), gcm.final(), gcm.getAuthTag()]);
    expect(ct.toString('hex')).to.equal(v.aesGcm.ciphertextAndTag);
    const des = createCipheriv('des-ede3-cbc', Buffer.from(v.des3Cbc.key, 'hex'), Buffer.from(v.des3Cbc.iv, 'hex'));
    des.setAutoPadding(false);
    expect(Buffer.concat([des.update(Buffer.from(v.des3Cbc.plaintext, 'hex')), des.final()]).toString('hex')).to.equal(v.des3Cbc.ciphertext);
    expect(createHash('sha256').update(Buffer.from(v.sha256.message, 'hex')).digest('hex')).to.equal(v.sha256.digest);
    expect(createHmac('sha256', Buffer.from(v.hmacSha256.key, 'hex')).update(Buffer.from(v.hmacSha256.message, 'hex')).digest('hex')).to.equal(v.hmacSha256.mac);
    const rsa = createPublicKey({ key: { kty: 'RSA', n: Buffer.from(v.rsaPkcs1Sha256.modulus, 'hex').toString('base64url'), e: 'AQAB' }, format: 'jwk' });
    expect(verify('sha256', Buffer.from(v.rsaPkcs1Sha256.message, 'hex'), rsa, Buffer.from(v.rsaPkcs1Sha256.signature, 'hex'))).to.equal(true);
  });
});

function flipHex(h: string): string {
  const b = Buffer.from(h, 'hex');
  b[b.length - 1] ^= 0x01;
  return b.toString('hex');
}
