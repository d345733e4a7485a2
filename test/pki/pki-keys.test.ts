import { expect } from 'chai';
import * as asn1js from 'asn1js';
import { createPublicKey, createVerify, generateKeyPairSync, sign as nodeSign } from 'node:crypto';
import { isVbiError } from '@vbi/core/errors';
import { findSlotByLabel } from '@vbi/server/hsm/pkcs11-library';
import { SIGNING_ROLES, pairTemplates, parseSigningKeyLabel, roleSpec, signingKeyLabel } from '@vbi/server/hsm/key-templates';
import { generateSigningKey, signingKeyReport } from '@vbi/server/hsm/signing-keys';
import { TokenSigner } from '@vbi/server/hsm/token-signer';
import { derToRaw, rawToDer } from '@vbi/core/pki/ecdsa-signature';
import { keyUsage } from '@vbi/core/pki/extensions';
import { buildCsr, parseRequestInfo } from '@vbi/server/pki/csr';
import { OID, oidIs, parsedOidSpelling } from '@vbi/core/pki/oids';
import { TEST_SO_PIN, TEST_USER_PIN, provisionToken, testLibrary, uniqueLabel } from '../helpers/hsm';

describe('PKI: signing keys in their own tokens (templates, TokenSigner)', () => {
  const label = uniqueLabel('pki-keys');
  const lib = () => testLibrary();
  before(async () => {
    await provisionToken(label, 'aes', false);
    for (const role of SIGNING_ROLES) await generateSigningKey({ library: lib(), label, soPin: TEST_SO_PIN, userPin: TEST_USER_PIN, role, generation: 1 });
    await generateSigningKey({ library: lib(), label, soPin: TEST_SO_PIN, userPin: TEST_USER_PIN, role: 'ca-root', generation: 2 });
  });

  it('creates each generation with exactly its role template (read back through PKCS#11)', async () => {
    const keys = await signingKeyReport({ library: lib(), label, userPin: TEST_USER_PIN });
    expect(keys.map((k) => `${k.label}/${k.class}`).sort()).to.deep.equal([
      'vbi.ca.issuing.1/private', 'vbi.ca.issuing.1/public', 'vbi.ca.root.1/private', 'vbi.ca.root.1/public',
      'vbi.ca.root.2/private', 'vbi.ca.root.2/public', 'vbi.officer.1/private', 'vbi.officer.1/public',
      'vbi.vendor.ra.1/private', 'vbi.vendor.ra.1/public',
    ]);
    for (const k of keys) {
      const parsed = parseSigningKeyLabel(k.label);
      expect(k.role).to.equal(parsed?.role);
      const spec = roleSpec(k.role as 'ca-root');
      const want = k.class === 'private' ? (spec as { privateAttributes: Record<string, boolean> }).privateAttributes : (spec as { publicAttributes: Record<string, boolean> }).publicAttributes;
      for (const [name, value] of Object.entries(want)) expect(k.attributes[name], `${k.label} ${k.class} ${name}`).to.equal(value);
      expect(k.weaknesses, k.label).to.deep.equal([]);
      expect(k.keyType).to.equal('EC');
      if (k.class === 'private') expect(k.attributes).to.deep.include({ extractable: false, sensitive: true, sign: true, decrypt: false, unwrap: false, derive: false });
    }
    expect(pairTemplates('vendor-ra').privateTemplate.label).to.equal('vbi.vendor.ra');
    expect(signingKeyLabel('ca-issuing', 7)).to.equal('vbi.ca.issuing.7');
    expect(parseSigningKeyLabel('vbi.ca.root.0')).to.equal(null);
    expect(parseSigningKeyLabel('vbi.module.identity')).to.equal(null);
  });

  it('never replaces a generation, and proves the SO PIN first', async () => {
    const again = await generateSigningKey({ library: lib(), label, soPin: TEST_SO_PIN, userPin: TEST_USER_PIN, role: 'ca-root', generation: 1 }).then(() => null, (e) => e);
    expect(isVbiError(again, 'KEY_EXISTS'), String(again)).to.equal(true);
    const badSo = await generateSigningKey({ library: lib(), label, soPin: 'wrong-officer', userPin: TEST_USER_PIN, role: 'ca-root', generation: 9 }).then(() => null, (e) => e);
    expect(isVbiError(badSo, 'PIN_INCORRECT'), String(badSo)).to.equal(true);
  });

  it('signs ECDSA P-256 over SHA-256 with raw r||s that verifies under the key\'s SPKI; recovers lost sessions', async () => {
    const signer = await TokenSigner.open({ library: lib(), tokenLabel: label, userPin: TEST_USER_PIN });
    try {
      const key = { role: 'ca-issuing' as const, generation: 1 };
      const spki = await signer.publicKeySpki(key);
      const pub = createPublicKey({ key: spki, format: 'der', type: 'spki' });
      const check = (data: Buffer, sig: Buffer) => createVerify('sha256').update(data).verify({ key: pub, dsaEncoding: 'ieee-p1363' }, sig);
      const data = Buffer.from('to be signed');
      const sig = await signer.sign({ key, data });
      expect(sig).to.have.length(64);
      expect(check(data, sig)).to.equal(true);
      // 16 concurrent signatures through a pool of 2 sessions
      const many = await Promise.all(Array.from({ length: 16 }, (_, i) => signer.sign({ key, data: Buffer.from(`m${i}`) })));
      expect(many.every((s, i) => check(Buffer.from(`m${i}`), s))).to.equal(true);
      // C_CloseAllSessions behind its back: the next call recovers on a fresh, logged-in session
      findSlotByLabel(lib(), label).closeAll();
      expect(check(data, await signer.sign({ key, data }))).to.equal(true);
      expect(await signer.hasKey({ role: 'ca-root', generation: 3 })).to.equal(false);
      const missing = await signer.sign({ key: { role: 'ca-root', generation: 3 }, data }).then(() => null, (e) => e);
      expect(isVbiError(missing, 'KEY_MISSING'), String(missing)).to.equal(true);
    } finally {
      signer.close();
      signer.close();
    }
    const closed = await signer.sign({ key: { role: 'vendor-ra', generation: 1 }, data: Buffer.alloc(1) }).then(() => null, (e) => e);
    expect(isVbiError(closed, 'MODULE_NOT_READY'), String(closed)).to.equal(true);
    const badPin = await TokenSigner.open({ library: lib(), tokenLabel: label, userPin: 'wrong-pin' }).then(() => null, (e) => e);
    expect(isVbiError(badPin, 'PIN_INCORRECT'), String(badPin)).to.equal(true);
  });
});

describe('PKI: encodings', () => {
  it('converts raw r||s to DER ECDSA-Sig-Value and back (sign bytes, leading zeros)', () => {
    const table: Array<[string, string, string]> = [
      ['small r and s', '00'.repeat(31) + '01', '00'.repeat(31) + '02'],
      ['high bit set (needs a 00 sign byte)', 'ff'.repeat(32), '80' + '00'.repeat(31)],
      ['leading zero bytes', '0000' + '7f'.repeat(30), '00' + '01'.repeat(31)],
    ];
    for (const [what, r, s] of table) {
      const raw = Buffer.from(r + s, 'hex');
      const der = rawToDer(raw);
      expect(derToRaw(der).equals(raw), what).to.equal(true);
      const seq = asn1js.fromBER(der).result as asn1js.Sequence;
      for (const int of seq.valueBlock.value as asn1js.Integer[]) {
        const v = Buffer.from(int.valueBlock.valueHexView);
        expect(v[0] & 0x80, `${what}: positive`).to.equal(0);
        expect(v.length === 1 || v[0] !== 0 || (v[1] & 0x80) !== 0, `${what}: minimal`).to.equal(true);
      }
    }
    // node produces DER: the conversion agrees with OpenSSL's encoding
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const data = Buffer.from('x');
    const der = nodeSign('sha256', data, privateKey);
    expect(createVerify('sha256').update(data).verify({ key: publicKey, dsaEncoding: 'ieee-p1363' }, derToRaw(der))).to.equal(true);
    expect(rawToDer(derToRaw(der)).equals(der)).to.equal(true);
  });

  it('encodes keyUsage as minimal DER bit strings', () => {
    expect(Buffer.from(keyUsage(['digitalSignature']).extnValue.valueBlock.valueHexView).toString('hex')).to.equal('03020780');
    expect(Buffer.from(keyUsage(['keyCertSign', 'cRLSign']).extnValue.valueBlock.valueHexView).toString('hex')).to.equal('03020106');
  });

  it('matches OIDs under the UUID arc however asn1js spells them', () => {
    expect(parsedOidSpelling(OID.nextCaKeyHash)).to.not.equal(OID.nextCaKeyHash);
    expect(oidIs(parsedOidSpelling(OID.nextCaKeyHash), OID.nextCaKeyHash)).to.equal(true);
    expect(oidIs(parsedOidSpelling(OID.kpIndicium), OID.nextCaKeyHash)).to.equal(false);
  });

  it('recognises exactly a canonical DER CertificationRequestInfo (what a meter key may sign)', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const spki = publicKey.export({ type: 'spki', format: 'der' }) as Buffer;
    let info: Buffer = Buffer.alloc(0);
    await buildCsr({ subject: { commonName: 'M-INFO-1', organizationalUnit: 'indicium' }, publicKeySpki: spki, signer: { algorithm: 'ecdsa-sha256', sign: async (tbs) => { info = tbs; return nodeSign('sha256', tbs, privateKey); } } });
    const ok = parseRequestInfo(info);
    expect(ok?.subject?.commonName).to.equal('M-INFO-1');
    expect(ok?.spki.equals(spki)).to.equal(true);
    const longLength = Buffer.concat([Buffer.from([0x30, 0x81, info[1]]), info.subarray(2)]);
    const table: Array<[string, Buffer]> = [
      ['trailing byte', Buffer.concat([info, Buffer.from([0])])],
      ['truncated', info.subarray(0, info.length - 1)],
      ['non-minimal length', longLength],
      ['not DER at all', Buffer.from('indicium data')],
      ['empty', Buffer.alloc(0)],
    ];
    for (const [what, bad] of table) expect(parseRequestInfo(bad), what).to.equal(null);
  });
});
