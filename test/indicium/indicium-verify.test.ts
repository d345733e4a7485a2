import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { constants, generateKeyPairSync, KeyObject, sign, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IndiciumKeyAlgorithm } from '@vbi/server/hsm/hsm-module';
import { CertificateLookup } from '@vbi/core/indicium/certificates';
import { IndiciumFields } from '@vbi/core/indicium/fields';
import { OID } from '@vbi/core/pki/oids';
import { signIndicium } from '@vbi/core/indicium/sign';
import { IndiciumVerifier, VerifyCode } from '@vbi/core/indicium/verify';
import { isoDay, sampleFields } from '../helpers/indicium-fixtures';
import { opensslVerify } from '../helpers/openssl-verify';
import { createIntermediateCa, createRootCa, issueIndiciumCertificate, randomSerial, TestCa } from '../helpers/throwaway-ca';

/** A software key standing in for the HSM (test/indicium/indicium-hsm.test.ts uses the real token). */
function softKey(algorithm: IndiciumKeyAlgorithm): { spki: Buffer; sign: (data: Buffer) => Promise<Buffer> } {
  const { publicKey, privateKey } =
    algorithm === 'ec-p256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    spki: publicKey.export({ type: 'spki', format: 'der' }),
    sign: async (data) =>
      algorithm === 'ec-p256'
        ? sign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' })
        : sign('sha256', data, { key: privateKey as KeyObject, padding: constants.RSA_PKCS1_PADDING }),
  };
}

describe('indicium verification (throwaway CA)', function () {
  this.timeout(60_000);
  let dir: string;
  let root: TestCa;
  const today = isoDay(0);

  interface Meter { cert: Buffer; serial: string; sign: (data: Buffer) => Promise<Buffer>; algorithm: IndiciumKeyAlgorithm }
  const meters: Record<string, Meter> = {};

  function makeMeter(issuer: TestCa, algorithm: IndiciumKeyAlgorithm = 'ec-p256', days = 365): Meter {
    const key = softKey(algorithm);
    const serial = randomSerial();
    const cert = issueIndiciumCertificate(dir, issuer, { spki: key.spki, serialHex: serial, days });
    return { cert, serial, sign: key.sign, algorithm };
  }

  async function indicium(m: Meter, over: Partial<IndiciumFields> = {}): Promise<Buffer> {
    const fields = sampleFields({ algorithm: m.algorithm, certSerial: m.serial, dateOfMailing: today, ...over });
    return (await signIndicium({ fields, sign: m.sign })).indicium;
  }

  const lookupOf = (...ms: Meter[]): CertificateLookup => ({
    bySerial: async (serial) => ms.find((m) => m.serial === serial)?.cert ?? null,
  });

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'vbi-indicium-ca-'));
    root = createRootCa(dir);
    meters.ec = makeMeter(root, 'ec-p256');
    meters.rsa = makeMeter(root, 'rsa-2048');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('VALID with the certificate supplied, and with a lookup by serial', async () => {
    const v = new IndiciumVerifier({ trustAnchors: [root.certPem], certificates: lookupOf(meters.ec) });
    const bytes = await indicium(meters.ec);
    const supplied = await new IndiciumVerifier({ trustAnchors: [root.certDer] }).verify({ indicium: bytes, certificate: meters.ec.cert });
    expect(supplied.code, supplied.reason).to.equal('VALID');
    const looked = await v.verify({ indicium: bytes });
    expect(looked.code, looked.reason).to.equal('VALID');
    expect(looked.fields).to.deep.equal(sampleFields({ certSerial: meters.ec.serial, dateOfMailing: today }));
    expect(looked.certificate?.serial).to.equal(meters.ec.serial);
    expect(looked.digest).to.match(/^[0-9a-f]{64}$/);
  });

  it('VALID for RSA-2048 indicia (322 bytes)', async () => {
    const bytes = await indicium(meters.rsa, { itemType: 'voucher', destinationZip: '' });
    expect(bytes.length).to.equal(50 + 8 + 8 + 256);
    const r = await new IndiciumVerifier({ trustAnchors: [root.certPem] }).verify({ indicium: bytes, certificate: meters.rsa.cert });
    expect(r.code, r.reason).to.equal('VALID');
  });

  for (const alg of ['ec', 'rsa'] as const) {
    it(`a one-byte change at every position of an ${alg} indicium is BAD_SIGNATURE or MALFORMED`, async () => {
      const m = meters[alg];
      const v = new IndiciumVerifier({ trustAnchors: [root.certPem] });
      const bytes = await indicium(m);
      const seen = new Map<VerifyCode, number>();
      for (let i = 0; i < bytes.length; i++) {
        for (const mask of [0x01, 0x80, 0xff]) {
          const changed = Buffer.from(bytes);
          changed[i] ^= mask;
          const r = await v.verify({ indicium: changed, certificate: m.cert });
          expect(['BAD_SIGNATURE', 'MALFORMED'], `byte ${i} ^ ${mask}: ${r.code} ${r.reason}`).to.include(r.code);
          seen.set(r.code, (seen.get(r.code) ?? 0) + 1);
        }
      }
      expect(seen.get('BAD_SIGNATURE')).to.be.greaterThan(0);
      expect(seen.get('MALFORMED')).to.be.greaterThan(0);
    });
  }

  it('with a lookup, a changed serial byte finds no certificate (UNKNOWN_CERTIFICATE), other bytes fail as before', async () => {
    const v = new IndiciumVerifier({ trustAnchors: [root.certPem], certificates: lookupOf(meters.ec) });
    const bytes = await indicium(meters.ec);
    for (let i = 0; i < bytes.length; i++) {
      const changed = Buffer.from(bytes);
      changed[i] ^= 0x01;
      const r = await v.verify({ indicium: changed });
      const expected = i >= 4 && i < 12 ? ['UNKNOWN_CERTIFICATE'] : ['BAD_SIGNATURE', 'MALFORMED'];
      expect(expected, `byte ${i}: ${r.code} ${r.reason}`).to.include(r.code);
    }
  });

  it('UNKNOWN_CERTIFICATE: no such serial, no lookup, an unparsable certificate, another meter\'s certificate', async () => {
    const bytes = await indicium(meters.ec);
    const v = new IndiciumVerifier({ trustAnchors: [root.certPem], certificates: lookupOf() });
    expect((await v.verify({ indicium: bytes })).code).to.equal('UNKNOWN_CERTIFICATE');
    expect((await new IndiciumVerifier({ trustAnchors: [root.certPem] }).verify({ indicium: bytes })).code).to.equal('UNKNOWN_CERTIFICATE');
    expect((await v.verify({ indicium: bytes, certificate: Buffer.from('not a certificate') })).code).to.equal('UNKNOWN_CERTIFICATE');
    // Another meter's certificate: its key does not verify this signature.
    const other = makeMeter(root);
    expect((await v.verify({ indicium: bytes, certificate: other.cert })).code).to.equal('BAD_SIGNATURE');
  });

  it('UNKNOWN_CERTIFICATE when the same key is certified under another serial than the indicium names', async () => {
    const key = softKey('ec-p256');
    const named = randomSerial();
    const certA = issueIndiciumCertificate(dir, root, { spki: key.spki, serialHex: named });
    const certB = issueIndiciumCertificate(dir, root, { spki: key.spki });
    const bytes = (await signIndicium({ fields: sampleFields({ certSerial: named, dateOfMailing: today }), sign: key.sign })).indicium;
    const v = new IndiciumVerifier({ trustAnchors: [root.certPem] });
    expect((await v.verify({ indicium: bytes, certificate: certA })).code).to.equal('VALID');
    const r = await v.verify({ indicium: bytes, certificate: certB });
    expect(r.code).to.equal('UNKNOWN_CERTIFICATE');
    expect(r.reason).to.contain(named);
  });

  it('UNKNOWN_CERTIFICATE when the certificate does not chain to the trusted root (even a look-alike root)', async () => {
    const bytes = await indicium(meters.ec);
    const other = createRootCa(join(dir, 'other'), 'Another Root');
    const lookAlike = createRootCa(join(dir, 'fake'), root.name); // same name, different key
    for (const anchor of [other, lookAlike]) {
      const r = await new IndiciumVerifier({ trustAnchors: [anchor.certPem] }).verify({ indicium: bytes, certificate: meters.ec.cert });
      expect(r.code, anchor.name).to.equal('UNKNOWN_CERTIFICATE');
      expect(r.reason).to.contain('trusted root');
    }
    // A meter certificate issued by the look-alike root, signature fine, chain not.
    const forged = makeMeter(lookAlike);
    const r = await new IndiciumVerifier({ trustAnchors: [root.certPem] }).verify({ indicium: await indicium(forged), certificate: forged.cert });
    expect(r.code).to.equal('UNKNOWN_CERTIFICATE');
  });

  it('follows intermediates, and only when they are supplied', async () => {
    const sub = createIntermediateCa(join(dir, 'sub'), root, 'Test Indicium CA');
    const m = makeMeter(sub);
    const bytes = await indicium(m);
    const without = await new IndiciumVerifier({ trustAnchors: [root.certPem] }).verify({ indicium: bytes, certificate: m.cert });
    expect(without.code).to.equal('UNKNOWN_CERTIFICATE');
    const withSub = await new IndiciumVerifier({ trustAnchors: [root.certPem], intermediates: [sub.certPem] }).verify({ indicium: bytes, certificate: m.cert });
    expect(withSub.code, withSub.reason).to.equal('VALID');
  });

  it('refuses an end-entity certificate used as an intermediate', async () => {
    // The meter key "issues" a certificate: openssl will sign with any key, the verifier must refuse the non-CA issuer.
    const leafKey = join(dir, 'leaf-as-ca.key');
    execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', leafKey]);
    const leafCa = issueIndiciumCertificate(dir, root, { spki: spkiOfKeyFile(leafKey), subject: '/CN=not a CA' });
    writeFileSync(join(dir, 'leaf-as-ca.pem'), new X509Certificate(leafCa).toString());
    const fakeCa: TestCa = { name: 'not a CA', certPath: join(dir, 'leaf-as-ca.pem'), keyPath: leafKey, certPem: new X509Certificate(leafCa).toString(), certDer: leafCa };
    const m = makeMeter(fakeCa);
    const r = await new IndiciumVerifier({ trustAnchors: [root.certPem], intermediates: [fakeCa.certPem] }).verify({ indicium: await indicium(m), certificate: m.cert });
    expect(r.code).to.equal('UNKNOWN_CERTIFICATE');
  });

  it('CERT_EXPIRED when the date of mailing is after notAfter or before notBefore', async () => {
    const v = new IndiciumVerifier({ trustAnchors: [root.certPem] });
    const m = makeMeter(root, 'ec-p256', 30);
    for (const [date, code] of [[isoDay(0), 'VALID'], [isoDay(29), 'VALID'], [isoDay(31), 'CERT_EXPIRED'], [isoDay(400), 'CERT_EXPIRED'], [isoDay(-1), 'CERT_EXPIRED']] as const) {
      const r = await v.verify({ indicium: await indicium(m, { dateOfMailing: date }), certificate: m.cert });
      expect(r.code, `${date}: ${r.reason}`).to.equal(code);
    }
  });

  it('binds the certificate to its meter: subject OU=indicium, CN=<meter ID> (the CA profile), or meterIdOf', async () => {
    const key = softKey('ec-p256');
    const serial = randomSerial();
    const cert = issueIndiciumCertificate(dir, root, { spki: key.spki, serialHex: serial, subject: '/O=Test Vendor/OU=indicium/CN=M-000042' });
    const sign = async (meterId: string) =>
      (await signIndicium({ fields: sampleFields({ certSerial: serial, meterId, dateOfMailing: today }), sign: key.sign })).indicium;
    const byProfile = new IndiciumVerifier({ trustAnchors: [root.certPem] });
    expect((await byProfile.verify({ indicium: await sign('M-000042'), certificate: cert })).code).to.equal('VALID');
    const r = await byProfile.verify({ indicium: await sign('M-000043'), certificate: cert });
    expect(r.code).to.equal('UNKNOWN_CERTIFICATE');
    expect(r.reason).to.contain('M-000042');
    // A caller-supplied rule replaces the profile's.
    const custom = new IndiciumVerifier({ trustAnchors: [root.certPem], meterIdOf: () => 'M-000043' });
    expect((await custom.verify({ indicium: await sign('M-000043'), certificate: cert })).code).to.equal('VALID');
  });

  it('refuses a certificate whose extendedKeyUsage does not allow indicium signing (e.g. a module identity)', async () => {
    const key = softKey('ec-p256');
    const bytesFor = async (serial: string) =>
      (await signIndicium({ fields: sampleFields({ certSerial: serial, dateOfMailing: today }), sign: key.sign })).indicium;
    const v = new IndiciumVerifier({ trustAnchors: [root.certPem] });
    const identity = randomSerial();
    const identityCert = issueIndiciumCertificate(dir, root, { spki: key.spki, serialHex: identity, extendedKeyUsage: OID.kpModuleIdentity });
    const r = await v.verify({ indicium: await bytesFor(identity), certificate: identityCert });
    expect(r.code).to.equal('UNKNOWN_CERTIFICATE');
    expect(r.reason).to.contain('extendedKeyUsage');
    const indiciumSerial = randomSerial();
    const indiciumCert = issueIndiciumCertificate(dir, root, { spki: key.spki, serialHex: indiciumSerial, extendedKeyUsage: OID.kpIndicium });
    expect((await v.verify({ indicium: await bytesFor(indiciumSerial), certificate: indiciumCert })).code).to.equal('VALID');
  });

  it('OpenSSL verifies the signature with the public key from the certificate', async () => {
    for (const m of [meters.ec, meters.rsa]) {
      const signed = await signIndicium({ fields: sampleFields({ algorithm: m.algorithm, certSerial: m.serial, dateOfMailing: today }), sign: m.sign });
      expect(opensslVerify(dir, m.cert, signed.data, signed.signature, m.algorithm)).to.deep.equal({ ok: true, out: 'Verified OK' });
      const tampered = Buffer.from(signed.data);
      tampered[tampered.length - 3] ^= 1;
      expect(opensslVerify(dir, m.cert, tampered, signed.signature, m.algorithm).ok).to.equal(false);
    }
  });
});

function spkiOfKeyFile(path: string): Buffer {
  return execFileSync('openssl', ['pkey', '-in', path, '-pubout', '-outform', 'DER']);
}
