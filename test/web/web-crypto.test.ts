import { expect } from 'chai';
import { constants, createCipheriv, generateKeyPairSync, privateDecrypt, randomBytes, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hmacSha256 as sdkHmac } from '@vbi/client/client/client-crypto';
import { indiciumAad } from '@vbi/core/protocol/bodies';
import { dynamicPassword as sdkDynamicPassword } from '@vbi/client/client/dynamic-password';
import { KeyFile } from '@vbi/client/client/key-file';
import { buildEnvelope, checkResponseMac } from '@vbi/client/client/envelope';
import { dynamicPasswordInput, OperationalResponse, passwordSecret, responseMacInput } from '@vbi/core/protocol/messages';
import { buildWebEnvelope, checkWebResponseMac } from '@vbi/client/web/client/web-envelope';
import { webPasswordSecret } from '@vbi/client/web/crypto/password-secret';
import { decryptWithSessionKey, encryptToModule, hmacSha256, macMatches, verifyEcdsaP256 } from '@vbi/client/web/crypto/web-crypto';
import { WebKeyFile } from '@vbi/client/web/crypto/web-key-file';

async function rejection(p: Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await p;
  } catch (e) {
    return e as { code?: string; message: string };
  }
  throw new Error('expected a rejection');
}

/**
 * The web app's crypto (packages/client/src/web/crypto, WebCrypto + @noble/hashes) against the SDK's
 * (node:crypto): same inputs, same bytes; each side reads what the other wrote.
 */
describe('web app crypto against the SDK', () => {
  const hmk = randomBytes(32);

  it('HMAC-SHA256 and dynamic passwords equal the SDK\'s; MAC checks accept only the right key and bytes', async () => {
    for (const len of [0, 1, 64, 1000]) {
      const data = randomBytes(len);
      expect((await hmacSha256(hmk, data)).equals(sdkHmac(hmk, data))).to.equal(true);
    }
    const d = { meterId: 'M-000042', sessionId: 'ab'.repeat(16), counter: 7, clientTime: 1_700_000_000_000, purpose: 'print' as const, destinationZip: '62701', postage: 740 };
    expect((await hmacSha256(hmk, dynamicPasswordInput(d))).toString('base64')).to.equal(sdkDynamicPassword(hmk, d));
    const data = Buffer.from('VBI-OP-1\nresponse\n{}');
    const mac = sdkHmac(hmk, data).toString('base64');
    expect(await macMatches(hmk, data, mac)).to.equal(true);
    expect(await macMatches(randomBytes(32), data, mac)).to.equal(false);
    expect(await macMatches(hmk, Buffer.from('VBI-OP-1\nresponse\n{ }'), mac)).to.equal(false);
    expect(await macMatches(hmk, data, 42)).to.equal(false);
  });

  it('the operational envelope equals the SDK\'s for the same inputs; a response the SDK accepts the web client accepts, and refuses what it refuses', async () => {
    const base = { meterId: 'M-000042', challenge: 'q83vEjRWeJA=', registers: { ascending: 680, descending: 19_320 }, hmk };
    for (const [op, body] of [
      ['purchase', { payment: { token: 'tok_approve', kind: 'card' }, amount: 20_000, note: undefined }],
      ['balance', undefined],
      ['print', { sessionId: 'ab'.repeat(16), items: [{ counter: 3, destinationZip: '62701', postage: 740 }] }],
    ] as const) {
      expect(await buildWebEnvelope({ ...base, op, body })).to.deep.equal(buildEnvelope({ ...base, op, body }));
    }
    const unsigned: Omit<OperationalResponse, 'mac'> = {
      meterId: 'M-000042', op: 'balance', challenge: 'AAECAwQFBgcICQoLDA0ODw==', registers: { ascending: 680, descending: 19_320 },
      result: { state: 'active' }, receipt: { meterId: 'M-000042', op: 'balance', amount: 0, ascendingRegister: 680, descendingRegister: 19_320, sequence: 9, time: '2026-12-02T00:00:00Z', moduleSerial: 'abc', checkpointSeq: 4, signature: 'AA==' },
    };
    const good = { ...unsigned, mac: sdkHmac(hmk, responseMacInput(unsigned)).toString('base64') };
    const cases: Array<[string, unknown, 'balance' | 'history']> = [
      ['good', good, 'balance'],
      ['other key', { ...unsigned, mac: sdkHmac(randomBytes(32), responseMacInput(unsigned)).toString('base64') }, 'balance'],
      ['edited registers', { ...good, registers: { ascending: 0, descending: 20_000 } }, 'balance'],
      ['another op', good, 'history'],
      ['no challenge', { ...unsigned, challenge: '', mac: sdkHmac(hmk, responseMacInput({ ...unsigned, challenge: '' })).toString('base64') }, 'balance'],
      ['not a response', { error: 'x' }, 'balance'],
    ];
    for (const [name, response, op] of cases) {
      let sdk: string | undefined;
      try {
        checkResponseMac({ response, meterId: 'M-000042', op, hmk });
      } catch (e) {
        sdk = (e as { code: string }).code;
      }
      const web = await checkWebResponseMac({ response, meterId: 'M-000042', op, hmk }).then(() => undefined, (e: { code: string }) => e.code);
      expect(web, name).to.equal(sdk);
      expect(sdk === undefined, name).to.equal(name === 'good');
    }
  });

  it('RSA-OAEP to a transport key (SHA-256 and SHA-1) decrypts with the private key as the module does', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 3072 });
    const transportKey = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
    for (const oaepHash of ['sha256', 'sha1'] as const) {
      const secret = randomBytes(32);
      const ct = Buffer.from(await encryptToModule({ transportKey, oaepHash }, secret), 'base64');
      expect(ct).to.have.length(384);
      expect(privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash }, ct).equals(secret)).to.equal(true);
    }
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
    expect((await rejection(encryptToModule({ transportKey: ec, oaepHash: 'sha256' }, randomBytes(32)))).code).to.equal('CERT_INVALID');
  });

  it('an indicium encrypted to the session key (as the module does) decrypts only with the same key and AAD', async () => {
    const raw = randomBytes(32);
    const key = await globalThis.crypto.subtle.importKey('raw', raw, { name: 'AES-GCM' }, false, ['decrypt']);
    const indicium = randomBytes(120);
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', raw, iv);
    c.setAAD(indiciumAad('s1', 3));
    const blob = Buffer.concat([iv, c.update(indicium), c.final(), c.getAuthTag()]).toString('base64');
    const plain = await decryptWithSessionKey({ sessionKey: key, encrypted: blob, aad: indiciumAad('s1', 3), what: 'indicium' });
    expect(plain.equals(indicium)).to.equal(true);
    expect((await rejection(decryptWithSessionKey({ sessionKey: key, encrypted: blob, aad: indiciumAad('s1', 4), what: 'indicium' }))).code).to.equal('INDICIUM_MALFORMED');
    const flipped = Buffer.from(blob, 'base64');
    flipped[20] ^= 1;
    expect((await rejection(decryptWithSessionKey({ sessionKey: key, encrypted: flipped.toString('base64'), aad: indiciumAad('s1', 3), what: 'indicium' }))).code).to.equal('INDICIUM_MALFORMED');
  });

  it('ECDSA P-256 raw r||s signatures (module receipts) verify; another message or key does not', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const spki = publicKey.export({ type: 'spki', format: 'der' });
    const msg = Buffer.from('VBI-OP-1\nreceipt\n{"amount":740}');
    const sig = sign('sha256', msg, { key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64');
    expect(await verifyEcdsaP256(spki, msg, sig)).to.equal(true);
    expect(await verifyEcdsaP256(spki, Buffer.from('VBI-OP-1\nreceipt\n{"amount":741}'), sig)).to.equal(false);
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' });
    expect(await verifyEcdsaP256(other, msg, sig)).to.equal(false);
    expect(await verifyEcdsaP256(spki, msg, undefined)).to.equal(false);
  });

  it('the password secret (scrypt in @noble/hashes) equals the SDK\'s', async () => {
    for (const [pw, meter] of [['correct horse', 'M-000042'], ['Ünïcødé ﬁ', 'M-7']]) {
      expect((await webPasswordSecret(pw, meter)).equals(passwordSecret(pw, meter))).to.equal(true);
    }
  });

  describe('key file in the CLI\'s format', () => {
    let dir: string;
    const state = { meterId: 'M-000042', hmk: hmk.toString('base64'), registers: { ascending: 0, descending: 20_000 } };
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'vbi-web-keyfile-'));
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it('written by the web app, opened and saved by the SDK, opened again by the web app', async () => {
      const web = await WebKeyFile.create({ password: 'pw-12345', state });
      const path = join(dir, 'key.json');
      writeFileSync(path, web.text);
      const sdk = await KeyFile.open<typeof state>({ path, password: 'pw-12345' });
      expect(sdk.state).to.deep.equal(state);
      await sdk.save({ ...state, registers: { ascending: 740, descending: 19_260 } });
      const back = await WebKeyFile.open<typeof state>({ text: readFileSync(path, 'utf8'), password: 'pw-12345', name: 'key.json' });
      expect(back.state.registers).to.deep.equal({ ascending: 740, descending: 19_260 });
      const text = await back.save({ ...state, registers: { ascending: 1480, descending: 18_520 } });
      expect(text).not.to.include(state.hmk);
      expect(Object.keys(JSON.parse(text) as object).sort()).to.deep.equal(['cipher', 'ciphertext', 'format', 'iv', 'kdf', 'salt', 'tag', 'version']);
      writeFileSync(path, text);
      expect((await KeyFile.open<typeof state>({ path, password: 'pw-12345' })).state.registers.descending).to.equal(18_520);
    });

    it('written by the SDK, opened by the web app; a wrong password or an edited header is refused with the SDK\'s codes', async () => {
      const path = join(dir, 'key.json');
      await KeyFile.create({ path, password: 'pw-12345', state });
      const text = readFileSync(path, 'utf8');
      expect((await WebKeyFile.open<typeof state>({ text, password: 'pw-12345', name: 'key.json' })).state).to.deep.equal(state);
      expect((await rejection(WebKeyFile.open({ text, password: 'pw-54321', name: 'key.json' }))).code).to.equal('WRONG_PASSWORD');
      const edited = JSON.parse(text) as { kdf: { p: number } };
      edited.kdf.p = 2;
      expect((await rejection(WebKeyFile.open({ text: JSON.stringify(edited), password: 'pw-12345', name: 'key.json' }))).code).to.equal('WRONG_PASSWORD');
      expect((await rejection(WebKeyFile.open({ text: 'not json', password: 'pw-12345', name: 'key.json' }))).code).to.equal('BAD_REQUEST');
    });
  });
});
