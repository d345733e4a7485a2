import { expect } from 'chai';
import { createCipheriv, createHash, createHmac } from 'node:crypto';
import { KAT_VECTORS, KatVectors } from '../src/hsm/self-test';
import { provisionToken, startModule, uniqueLabel } from './helpers/hsm';
import { isVbiError } from '../src/errors';
import { MODULE_STATES } from '../src/hsm/module-state';

describe('module power-on self-tests and state machine', () => {
  const label = uniqueLabel('selftest');
  before(() => provisionToken(label));

  it('passes every known-answer and pairwise test on a fresh token and goes Idle', async () => {
    const m = await startModule(label);
    try {
      const st = m.status();
      expect(st.state).to.equal('Idle');
      expect(st.selfTest?.ok).to.equal(true);
      expect(st.selfTest?.results.map((r) => r.name)).to.include.members([
        'KAT AES-256-GCM', 'KAT AES-256-CMAC', 'KAT 3DES-CBC', 'KAT DES3-CMAC', 'KAT SHA-256',
        'pairwise EC P-256 sign/verify', 'pairwise RSA-2048 sign/verify',
      ]);
      expect(MODULE_STATES).to.include(st.state);
    } finally {
      await m.close();
    }
  });

  // One corrupted vector per mechanism family: each alone must put the module into Error.
  const corruptions: Array<[string, (v: KatVectors) => void, string]> = [
    ['AES-GCM ciphertext', (v) => { v.aesGcm.ciphertextAndTag = flipHex(v.aesGcm.ciphertextAndTag); }, 'KAT AES-256-GCM'],
    ['AES-CMAC', (v) => { v.aesCmac.mac = flipHex(v.aesCmac.mac); }, 'KAT AES-256-CMAC'],
    ['3DES-CBC', (v) => { v.des3Cbc.ciphertext = flipHex(v.des3Cbc.ciphertext); }, 'KAT 3DES-CBC'],
    ['DES3-CMAC', (v) => { v.des3Cmac.mac = flipHex(v.des3Cmac.mac); }, 'KAT DES3-CMAC'],
    ['SHA-256', (v) => { v.sha256.digest = flipHex(v.sha256.digest); }, 'KAT SHA-256'],
    ['key wrap', (v) => { v.aesKeyWrapPad.wrapped = flipHex(v.aesKeyWrapPad.wrapped); }, 'KAT AES key wrap with padding'],
  ];
  for (const [what, corrupt, testName] of corruptions) {
    it(`a corrupted ${what} vector puts the module into Error and every command is refused`, async () => {
      const vectors = structuredClone(KAT_VECTORS);
      corrupt(vectors);
      const m = await startModule(label, 'aes', { vectors });
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
  });
});

function flipHex(h: string): string {
  const b = Buffer.from(h, 'hex');
  b[b.length - 1] ^= 0x01;
  return b.toString('hex');
}
