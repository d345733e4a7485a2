import { expect } from 'chai';
import { createPublicKey, createVerify, generateKeyPairSync, sign as nodeSign } from 'node:crypto';
import { isVbiError } from '@vbi/core/errors';
import { CertificateResponseMessage } from '@vbi/server/pki/ca-protocol';
import { CaClient, HttpCaClient } from '@vbi/server/pki/ca-client';
import { buildCertificate } from '@vbi/server/pki/cert-builder';
import { readCertInfo } from '@vbi/core/pki/cert-info';
import { buildCsr, parseCsr } from '@vbi/server/pki/csr';
import { buildName } from '@vbi/core/pki/names';
import { OID } from '@vbi/core/pki/oids';
import { randomSerial } from '@vbi/server/pki/ca/serial';
import { leafExtensions, LEAF_PROFILES } from '@vbi/server/pki/ca/profile';
import { X509Signer } from '@vbi/core/pki/signer';
import { requireCertifiedKey } from '@vbi/server/module/commands/metergen-certify';
import { createMeterGen, loadMeterGenConfig } from '@vbi/server/config/metergen-config';
import { PkiWorld, RA_KEY_ID, openssl, opensslVerify, pemFile, startPkiWorld } from '../pki-fixtures';
import { TEST_USER_PIN, testLibrary } from '../helpers/hsm';

/** A software P-256 key (for requests and CAs that are not ours): node signs DER ECDSA. */
function softKey(): { spki: Buffer; signer: X509Signer } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    spki: publicKey.export({ type: 'spki', format: 'der' }) as Buffer,
    signer: { algorithm: 'ecdsa-sha256', sign: async (tbs) => nodeSign('sha256', tbs, privateKey) },
  };
}

async function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(() => null, (e: unknown) => e);
}

describe('PKI: MeterGen end to end (SoftHSM2 module, CA and vendor tokens, HTTP CA on 127.0.0.1)', () => {
  let w: PkiWorld;
  before(async () => {
    w = await startPkiWorld('mgen');
  });
  after(() => w.close());

  it('certifies several meters (EC P-256 and RSA-2048); OpenSSL accepts every certificate and request', async () => {
    const meters = await w.metergen.createMeters([
      { meterId: 'M-GEN-1', maxDescendingRegister: 1_000_000 },
      { meterId: 'M-GEN-2', maxDescendingRegister: 1_000_000, licensingZip: '20260' },
      { meterId: 'M-GEN-3', maxDescendingRegister: 500_000 },
      { meterId: 'M-GEN-RSA', maxDescendingRegister: 500_000, algorithm: 'rsa-2048' },
    ]);
    expect(new Set(meters.map((m) => m.serialHex)).size).to.equal(4);
    const issuing = w.ca.chain()[0];
    for (const m of meters) {
      // the package: still unassigned, now carrying serial and expiry of its certificate
      const pkg = await w.store.package(m.meterId);
      const cert = readCertInfo(m.certificateDer);
      expect(pkg.state).to.equal('unassigned');
      expect(pkg.indiciumCertSerial).to.equal(m.serialHex).and.to.equal(cert.serialHex).and.to.match(/^[4-7][0-9a-f]{31}$/);
      expect(pkg.indiciumKeyExpiry).to.equal(cert.notAfter.getTime());
      expect(pkg.indiciumKeyAlgorithm).to.equal(m.algorithm);
      expect((await w.certificates.getBySerial(m.serialHex))?.certificateDer.equals(m.certificateDer)).to.equal(true);
      // the certificate's key is the package's wrapped key: a signature made in the module verifies
      const data = Buffer.from(`probe for ${m.meterId}`);
      const sig = await w.module.signWithWrappedKey({ wrappedKey: pkg.secrets.wrappedIndiciumKey, algorithm: pkg.indiciumKeyAlgorithm as 'ec-p256', data });
      const key = createPublicKey({ key: cert.spki, format: 'der', type: 'spki' });
      const ok = m.algorithm === 'ec-p256'
        ? createVerify('sha256').update(data).verify({ key, dsaEncoding: 'ieee-p1363' }, sig)
        : createVerify('sha256').update(data).verify(key, sig);
      expect(ok, m.meterId).to.equal(true);
      // OpenSSL: the chain, the request's self-signature, and the profile
      expect(m.chain.map((c) => c.toString('hex'))).to.deep.equal([issuing.toString('hex')]);
      const v = await opensslVerify(w.dir, m.certificateDer, w.rootDer(), m.chain);
      expect(v.code, v.out).to.equal(0);
      expect(v.out).to.match(/: OK\s*$/);
      const req = await openssl('req', '-verify', '-noout', '-in', pemFile(w.dir, `${m.meterId}.csr.pem`, 'CERTIFICATE REQUEST', m.requestDer));
      expect(req.code, req.out).to.equal(0);
      expect(req.out).to.match(/verify OK/);
      const text = (await openssl('x509', '-noout', '-text', '-in', pemFile(w.dir, `${m.meterId}.pem`, 'CERTIFICATE', m.certificateDer))).out;
      expect(text).to.match(/Subject: O = VBI Test Vendor, OU = indicium, CN = (M-GEN-[0-9A-Z]+)/);
      expect(text).to.contain(`CN = ${m.meterId}`);
      expect(text).to.match(/Key Usage: critical\s+Digital Signature\s*\n/);
      expect(text).to.match(/Basic Constraints: critical\s+CA:FALSE/);
      expect(text).to.contain('Signature Algorithm: ecdsa-with-SHA256');
      expect(text).to.contain(`${OID.kpIndicium}`);
    }
    const issued = w.caIssued();
    expect(issued.map((r) => r.serial)).to.include.members(meters.map((m) => m.serialHex));
  });

  it('an uncertified meter is unusable: unassigned, no serial, and its key signs nothing but its own request', async () => {
    const created = await w.store.createUncertifiedMeter({ meterId: 'M-UNCERT-1', algorithm: 'ec-p256', maxDescendingRegister: 1000 });
    const pkg = await w.store.package('M-UNCERT-1');
    expect(pkg).to.deep.include({ state: 'unassigned', indiciumCertSerial: '', indiciumKeyExpiry: 0 });
    expect(() => requireCertifiedKey(pkg, Date.now())).to.throw().with.property('code', 'METER_NOT_CERTIFIED');
    // no signing oracle: arbitrary bytes, a request for another key, a request naming another meter
    const notCsr = await failure(w.store.signCertificationRequest({ meterId: 'M-UNCERT-1', requestInfo: Buffer.from('indicium-like bytes') }));
    expect(isVbiError(notCsr, 'CSR_SIGN_REFUSED'), String(notCsr)).to.equal(true);
    let captured: Buffer | undefined;
    const other = softKey();
    await buildCsr({ subject: { commonName: 'M-UNCERT-1', organizationalUnit: 'indicium' }, publicKeySpki: other.spki, signer: { algorithm: 'ecdsa-sha256', sign: async (tbs) => { captured = tbs; return other.signer.sign(tbs); } } });
    const wrongKey = await failure(w.store.signCertificationRequest({ meterId: 'M-UNCERT-1', requestInfo: captured as Buffer }));
    expect(isVbiError(wrongKey, 'CSR_SIGN_REFUSED'), String(wrongKey)).to.equal(true);
    await buildCsr({ subject: { commonName: 'M-OTHER-9', organizationalUnit: 'indicium' }, publicKeySpki: created.publicKeySpki, signer: { algorithm: 'ecdsa-sha256', sign: async (tbs) => { captured = tbs; return Buffer.alloc(0); } } });
    const wrongName = await failure(w.store.signCertificationRequest({ meterId: 'M-UNCERT-1', requestInfo: captured as Buffer }));
    expect(isVbiError(wrongName, 'CSR_SIGN_REFUSED'), String(wrongName)).to.equal(true);
    // the genuine request is signed, and its signature verifies (openssl req -verify)
    const csr = await buildCsr({
      subject: { commonName: 'M-UNCERT-1', organizationalUnit: 'indicium' }, publicKeySpki: created.publicKeySpki,
      signer: { algorithm: 'ecdsa-sha256', sign: (tbs) => w.store.signCertificationRequest({ meterId: 'M-UNCERT-1', requestInfo: tbs }) },
    });
    const v = await openssl('req', '-verify', '-noout', '-in', pemFile(w.dir, 'uncert.csr.pem', 'CERTIFICATE REQUEST', csr));
    expect(v.code, v.out).to.equal(0);
    await w.store.discardMeter('M-UNCERT-1');
    expect(w.store.sealedPackage('M-UNCERT-1')).to.equal(undefined);
  });

  it('refuses a certificate whose public key is not the package\'s, and leaves no meter behind', async () => {
    // A CA answer for another key with the right subject: the request is swapped on the way
    // (properly countersigned by the real RA), so the real CA issues a valid certificate.
    const http = new HttpCaClient(w.server.url);
    const swapping: CaClient = {
      requestCertificate: async (req) => {
        const k = softKey();
        const subject = parseCsr(req.csr).subject as { commonName: string };
        const csr = await buildCsr({ subject: { ...subject, organizationalUnit: 'indicium' }, publicKeySpki: k.spki, signer: k.signer });
        return http.requestCertificate({ csr, raKeyId: w.ra.raKeyId, raSignature: await w.ra.countersign(csr) });
      },
    };
    const err = await failure(w.metergenWith({ ca: swapping }).createMeter({ meterId: 'M-SWAP-1', maxDescendingRegister: 1000 }));
    expect(isVbiError(err, 'CERT_KEY_MISMATCH'), String(err)).to.equal(true);
    expect(w.store.sealedPackage('M-SWAP-1'), 'meter discarded').to.equal(undefined);

    // The module refuses it too, on its own, if a store tried to certify with it.
    let issued: CertificateResponseMessage | undefined;
    const capture: CaClient = { requestCertificate: async (req) => (issued = await swapping.requestCertificate(req)) };
    await failure(w.metergenWith({ ca: capture }).createMeter({ meterId: 'M-SWAP-2', maxDescendingRegister: 1000 }));
    await w.store.createUncertifiedMeter({ meterId: 'M-SWAP-2', algorithm: 'ec-p256', maxDescendingRegister: 1000 });
    const cert = readCertInfo((issued as CertificateResponseMessage).certificate);
    const direct = await failure(w.store.certifyMeter({ meterId: 'M-SWAP-2', certificateDer: cert.der, serialHex: cert.serialHex, notAfter: cert.notAfter.getTime() }));
    expect(isVbiError(direct, 'CERT_KEY_MISMATCH'), String(direct)).to.equal(true);
    expect((await w.store.package('M-SWAP-2')).indiciumCertSerial).to.equal('');
    expect(await w.certificates.getBySerial(cert.serialHex)).to.equal(undefined);
  });

  it('refuses a certificate that does not chain to its own trust anchor, or names another meter', async () => {
    // a rogue CA that certifies exactly the requested key and subject
    const rogue = softKey();
    const rogueName = buildName({ organization: 'VBI Development Postal CA', commonName: 'VBI Dev Postal Issuing CA' });
    const rogueCa: CaClient = {
      requestCertificate: async (req) => {
        const csr = parseCsr(req.csr);
        const now = Date.now();
        const certificate = await buildCertificate({
          serial: randomSerial(), issuer: rogueName, subject: buildName({ organizationalUnit: 'indicium', commonName: csr.subject?.commonName as string }),
          spki: csr.spki, notBefore: new Date(now - 60_000), notAfter: new Date(now + 86_400_000),
          extensions: leafExtensions({ profile: LEAF_PROFILES.indicium, spki: csr.spki, issuerSpki: rogue.spki }),
        }, rogue.signer);
        return { certificate, chain: w.ca.chain() };
      },
    };
    const err = await failure(w.metergenWith({ ca: rogueCa }).createMeter({ meterId: 'M-ROGUE-1', maxDescendingRegister: 1000 }));
    expect(isVbiError(err, 'CERT_INVALID'), String(err)).to.equal(true);
    expect(w.store.sealedPackage('M-ROGUE-1')).to.equal(undefined);

    // the real CA's certificate for meter A returned for meter B
    const first = await w.metergen.createMeter({ meterId: 'M-NAME-A', maxDescendingRegister: 1000 });
    const replay: CaClient = { requestCertificate: async () => ({ certificate: first.certificateDer, chain: first.chain }) };
    const err2 = await failure(w.metergenWith({ ca: replay }).createMeter({ meterId: 'M-NAME-B', maxDescendingRegister: 1000 }));
    expect(isVbiError(err2, 'CERT_INVALID'), String(err2)).to.equal(true);
    expect((err2 as Error).message).to.contain("names 'M-NAME-A'");
  });

  it('an unreachable CA fails MeterGen with CA_UNAVAILABLE and leaves no meter', async () => {
    const err = await failure(w.metergenWith({ ca: new HttpCaClient('http://127.0.0.1:1', 2000) }).createMeter({ meterId: 'M-NOCA-1', maxDescendingRegister: 1000 }));
    expect(isVbiError(err, 'CA_UNAVAILABLE'), String(err)).to.equal(true);
    expect(w.store.sealedPackage('M-NOCA-1')).to.equal(undefined);
  });

  it('is wired from configuration alone: CA_URL, the trust anchor file and the vendor token', async () => {
    const anchorFile = pemFile(w.dir, 'postal-root.pem', 'CERTIFICATE', w.rootDer());
    const env = {
      CA_URL: w.server.url, VBI_TRUST_ANCHOR: anchorFile, VBI_RA_TOKEN_LABEL: w.vendorLabel, VBI_RA_KEY_ID: RA_KEY_ID,
      VBI_RA_USER_PIN: TEST_USER_PIN, VBI_INDICIUM_KEY_LIFETIME_DAYS: '90',
    };
    const config = loadMeterGenConfig(env);
    expect(config).to.deep.include({ caUrl: w.server.url, trustAnchorFile: anchorFile, keyLifetimeMs: 90 * 86_400_000 });
    const { metergen, close } = await createMeterGen({ config, library: testLibrary(), store: w.store });
    try {
      const m = await metergen.createMeter({ meterId: 'M-CONF-1', maxDescendingRegister: 1000 });
      expect((await w.store.package('M-CONF-1')).indiciumCertSerial).to.equal(m.serialHex);
    } finally {
      close();
    }
    for (const [what, over] of [['no CA_URL', { CA_URL: undefined }], ['not a URL', { CA_URL: 'ca.example' }], ['no RA key id', { VBI_RA_KEY_ID: undefined }], ['bad lifetime', { VBI_INDICIUM_KEY_LIFETIME_DAYS: '0' }]] as const) {
      expect(() => loadMeterGenConfig({ ...env, ...over }), what).to.throw().with.property('code', 'CONFIG_INVALID');
    }
  });

  it('records create and certify as checkpointed module transactions', () => {
    const types = w.engine.ringEntries().map((e) => e.checkpoint.type);
    expect(types.length).to.be.greaterThan(0);
    expect(types.every((t) => t === 'meter-create' || t === 'meter-certify')).to.equal(true);
  });
});
