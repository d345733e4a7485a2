import { expect } from 'chai';
import { constants, createDecipheriv, createHmac, publicEncrypt, randomBytes } from 'node:crypto';
import { CryptoModule } from '@vbi/server/hsm/crypto-module';
import { KeyRef } from '@vbi/server/hsm/hsm-module';
import { spkiToKeyObject } from '@vbi/server/hsm/public-keys';
import { isVbiError } from '@vbi/core/errors';
import { provisionToken, startModule, testLibrary, uniqueLabel } from '../helpers/hsm';

describe('client secrets and key chains in the module', () => {
  const label = uniqueLabel('chain');
  let m: CryptoModule;
  let usk: KeyRef;
  before(async () => {
    await provisionToken(label);
    m = await startModule(label);
    usk = { wrapped: await m.generateWrappedSecretKey(), usage: 'wrap' };
  });
  after(() => m.close());

  /** What a client does: RSA-OAEP (SHA-1, SoftHSM2's only choice) to the module transport key. */
  const toModule = (secret: Buffer) => publicEncrypt({ key: spkiToKeyObject(m.transportPublicKey()), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: testLibrary().profile.oaepHash }, secret);

  it('imports an HMK the host never sees and computes the same HMAC as the client', async () => {
    const hmk = randomBytes(32);
    const wrapped = await m.importClientSecret({ ciphertext: toModule(hmk), usage: 'hmac', under: [usk] });
    expect(wrapped.includes(hmk)).to.equal(false);
    const chain: KeyRef[] = [usk, { wrapped, usage: 'hmac' }];
    const data = Buffer.from('challenge|registers|body');
    const mac = await m.hmac({ keyChain: chain, data });
    expect(mac.equals(createHmac('sha256', hmk).update(data).digest())).to.equal(true);
    expect(await m.verifyHmac({ keyChain: chain, data, mac })).to.equal(true);
    expect(await m.verifyHmac({ keyChain: chain, data: Buffer.from('altered'), mac })).to.equal(false);
  });

  it('checks a password secret against a stored verifier without keeping the password', async () => {
    const pw = createHmac('sha256', 'salt').update('correct horse').digest();
    const wrapped = await m.importClientSecret({ ciphertext: toModule(pw), usage: 'hmac', under: [usk] });
    const constant = Buffer.from('vbi password verifier');
    const verifier = await m.hmac({ keyChain: [usk, { wrapped, usage: 'hmac' }], data: constant });
    expect(await m.verifyHmacWithClientSecret({ ciphertext: toModule(pw), data: constant, mac: verifier })).to.equal(true);
    const wrong = createHmac('sha256', 'salt').update('wrong horse').digest();
    expect(await m.verifyHmacWithClientSecret({ ciphertext: toModule(wrong), data: constant, mac: verifier })).to.equal(false);
  });

  it('encrypts to a client session key inside the token', async () => {
    const sk = randomBytes(32);
    const wrapped = await m.importClientSecret({ ciphertext: toModule(sk), usage: 'encrypt', under: [usk] });
    const aad = Buffer.from('session-1');
    const blob = await m.encryptWithKeyChain({ keyChain: [usk, { wrapped, usage: 'encrypt' }], plaintext: Buffer.from('indicium bytes'), aad });
    const d = createDecipheriv('aes-256-gcm', sk, blob.subarray(0, 12));
    d.setAAD(aad);
    d.setAuthTag(blob.subarray(blob.length - 16));
    expect(Buffer.concat([d.update(blob.subarray(12, blob.length - 16)), d.final()]).toString()).to.equal('indicium bytes');
  });

  it('refuses a secret that is not encrypted to its transport key, or of the wrong size', async () => {
    const bad = await m.importClientSecret({ ciphertext: randomBytes(384), usage: 'hmac', under: [usk] }).then(() => null, (e) => e);
    expect(isVbiError(bad, 'CLIENT_SECRET_INVALID'), String(bad)).to.equal(true);
    const short = await m.importClientSecret({ ciphertext: toModule(randomBytes(16)), usage: 'hmac', under: [usk] }).then(() => null, (e) => e);
    expect(isVbiError(short, 'CLIENT_SECRET_INVALID'), String(short)).to.equal(true);
  });
});
