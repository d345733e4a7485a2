import { expect } from 'chai';
import { generateKeyPairSync, sign as nodeSign } from 'node:crypto';
import { isVbiError } from '@vbi/core/errors';
import { buildCsr } from '@vbi/server/pki/csr';
import { NameFields } from '@vbi/core/pki/names';
import { X509Signer } from '@vbi/core/pki/signer';
import { VendorRa } from '@vbi/server/pki/vendor-ra';
import { TokenSigner } from '@vbi/server/hsm/token-signer';
import { createVendorRaKey, registerRa } from '@vbi/server/pki/ca/ca-ceremony';
import { readCertInfo } from '@vbi/core/pki/cert-info';
import { PkiWorld, RA_KEY_ID, openssl, opensslVerify, pemFile, startPkiWorld } from '../pki-fixtures';
import { TEST_SO_PIN, TEST_USER_PIN, provisionToken, testLibrary, uniqueLabel } from '../helpers/hsm';

function softKey(type: 'ec' | 'rsa' = 'ec', bits = 2048): { spki: Buffer; signer: X509Signer; sign(data: Buffer): Buffer } {
  const { publicKey, privateKey } = type === 'ec'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : generateKeyPairSync('rsa', { modulusLength: bits });
  const sign = (data: Buffer) => nodeSign('sha256', data, privateKey);
  return {
    spki: publicKey.export({ type: 'spki', format: 'der' }) as Buffer,
    signer: { algorithm: type === 'ec' ? 'ecdsa-sha256' : 'rsa-pkcs1-sha256', sign: async (tbs) => sign(tbs) },
    sign,
  };
}

describe('PKI: the dev/test postal CA over HTTP', () => {
  let w: PkiWorld;
  let post: (body: unknown) => Promise<{ status: number; body: { code?: string; message?: string; certificate?: string; chain?: string[] } }>;
  before(async () => {
    w = await startPkiWorld('ca');
    post = async (body) => {
      const res = await fetch(`${w.server.url}/v1/certificates`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: res.status, body: await res.json() };
    };
  });
  after(() => w.close());

  async function csrFor(subject: NameFields, key = softKey()): Promise<Buffer> {
    return buildCsr({ subject, publicKeySpki: key.spki, signer: key.signer });
  }

  it('issues for a request countersigned by the registered RA (software key requester: the CA does not care where keys live)', async () => {
    const csr = await csrFor({ commonName: 'M-CA-OK-1', organizationalUnit: 'indicium' });
    const r = await post({ csr: csr.toString('base64'), raKeyId: RA_KEY_ID, raSignature: (await w.ra.countersign(csr)).toString('base64') });
    expect(r.status, JSON.stringify(r.body)).to.equal(201);
    const cert = Buffer.from(r.body.certificate as string, 'base64');
    const chain = (r.body.chain as string[]).map((c) => Buffer.from(c, 'base64'));
    const v = await opensslVerify(w.dir, cert, w.rootDer(), chain.slice(0, 1));
    expect(v.code, v.out).to.equal(0);
    // The issuing CA certificate and the root are accepted by OpenSSL in their own right.
    const issuing = await opensslVerify(w.dir, chain[0], w.rootDer(), []);
    expect(issuing.code, issuing.out).to.equal(0);
    const text = (await openssl('x509', '-noout', '-text', '-in', pemFile(w.dir, 'issuing.pem', 'CERTIFICATE', chain[0]))).out;
    expect(text).to.match(/CA:TRUE, pathlen:0/);
    expect(text).to.match(/Key Usage: critical\s+Certificate Sign, CRL Sign/);
  });

  it('refuses every request without a valid vendor countersignature, and issues nothing for them', async () => {
    const before = w.caIssued().length;
    const csr = await csrFor({ commonName: 'M-CA-BAD-1', organizationalUnit: 'indicium' });
    const other = await csrFor({ commonName: 'M-CA-BAD-2', organizationalUnit: 'indicium' });
    const stranger = softKey();
    const good = (await w.ra.countersign(csr)).toString('base64');
    const cases: Array<[string, unknown, number, string]> = [
      ['no countersignature', { csr: csr.toString('base64'), raKeyId: RA_KEY_ID }, 400, 'BAD_REQUEST'],
      ['unregistered RA key id', { csr: csr.toString('base64'), raKeyId: 'vendor-x', raSignature: good }, 403, 'CA_REQUEST_REFUSED'],
      ['signed by a key that is not the RA\'s', { csr: csr.toString('base64'), raKeyId: RA_KEY_ID, raSignature: stranger.sign(csr).toString('base64') }, 403, 'CA_REQUEST_REFUSED'],
      ['countersignature of another request', { csr: csr.toString('base64'), raKeyId: RA_KEY_ID, raSignature: (await w.ra.countersign(other)).toString('base64') }, 403, 'CA_REQUEST_REFUSED'],
      ['garbage countersignature', { csr: csr.toString('base64'), raKeyId: RA_KEY_ID, raSignature: Buffer.from('not a signature').toString('base64') }, 403, 'CA_REQUEST_REFUSED'],
      ['request changed after countersigning', { csr: Buffer.concat([csr.subarray(0, -1), Buffer.from([csr[csr.length - 1] ^ 1])]).toString('base64'), raKeyId: RA_KEY_ID, raSignature: good }, 403, 'CA_REQUEST_REFUSED'],
    ];
    for (const [what, body, status, code] of cases) {
      const r = await post(body);
      expect(r.status, what).to.equal(status);
      expect(r.body.code, what).to.equal(code);
      expect(r.body.certificate, what).to.equal(undefined);
    }
    // Another smartcard with an RA key the CA never registered, claiming the vendor's id, through MeterGen.
    const otherLabel = uniqueLabel('ca-other-ven');
    await provisionToken(otherLabel, 'aes', false);
    await createVendorRaKey({ library: testLibrary(), tokenLabel: otherLabel, soPin: TEST_SO_PIN, userPin: TEST_USER_PIN });
    const otherSigner = await TokenSigner.open({ library: testLibrary(), tokenLabel: otherLabel, userPin: TEST_USER_PIN });
    const unregistered = new VendorRa(otherSigner, RA_KEY_ID);
    const err = await w.metergenWith({ ra: unregistered }).createMeter({ meterId: 'M-CA-BAD-3', maxDescendingRegister: 1000 }).then(() => null, (e) => e);
    otherSigner.close();
    expect(isVbiError(err, 'CA_REQUEST_REFUSED'), String(err)).to.equal(true);
    expect((err as Error).message).to.contain('vendor countersignature does not verify');
    expect(w.store.sealedPackage('M-CA-BAD-3'), 'no half-made meter').to.equal(undefined);
    expect(w.caIssued().length).to.equal(before);
  });

  it('applies the profile: proof of possession, known profile, valid name, accepted key types', async () => {
    const before = w.caIssued().length;
    const k = softKey();
    const notSelfSigned = await buildCsr({ subject: { commonName: 'M-CA-POP-1', organizationalUnit: 'indicium' }, publicKeySpki: k.spki, signer: softKey().signer });
    const cases: Array<[string, Buffer, RegExp]> = [
      ['no proof of possession', notSelfSigned, /not signed by the key it asks to certify/],
      ['unknown profile', await csrFor({ commonName: 'M-CA-1', organizationalUnit: 'server' }), /names no certificate profile/],
      ['no profile', await csrFor({ commonName: 'M-CA-1' }), /names no certificate profile/],
      ['meter id in lower case', await csrFor({ commonName: 'm-lower', organizationalUnit: 'indicium' }), /not a valid indicium name/],
      ['RSA-1024 key', await csrFor({ commonName: 'M-CA-RSA-1', organizationalUnit: 'indicium' }, softKey('rsa', 1024)), /accepts only ec-p256 or rsa-2048/],
      ['RSA key for a module identity', await csrFor({ commonName: 'ABCDEF0123456789', organizationalUnit: 'module-identity' }, softKey('rsa')), /accepts only ec-p256 keys/],
      ['not a PKCS#10 request', Buffer.from('30030201ff', 'hex'), /not a DER PKCS#10 request/],
    ];
    for (const [what, csr, why] of cases) {
      const r = await post({ csr: csr.toString('base64'), raKeyId: RA_KEY_ID, raSignature: (await w.ra.countersign(csr)).toString('base64') });
      expect(r.status, what).to.equal(403);
      expect(r.body.code, what).to.equal('CA_REQUEST_REFUSED');
      expect(r.body.message, what).to.match(why);
    }
    expect(w.caIssued().length).to.equal(before);
    const rsa = await csrFor({ commonName: 'M-CA-RSA-2', organizationalUnit: 'indicium' }, softKey('rsa'));
    const ok = await post({ csr: rsa.toString('base64'), raKeyId: RA_KEY_ID, raSignature: (await w.ra.countersign(rsa)).toString('base64') });
    expect(ok.status).to.equal(201);
  });

  it('never re-points a registered RA id at another key; a new id counts without a CA restart', async () => {
    expect(() => registerRa({ dir: w.caDir, raKeyId: RA_KEY_ID, publicKeySpki: softKey().spki })).to.throw().with.property('code', 'KEY_EXISTS');
    registerRa({ dir: w.caDir, raKeyId: RA_KEY_ID, publicKeySpki: await w.ra.publicKeySpki() }); // same key: no-op
    const ra2 = softKey();
    registerRa({ dir: w.caDir, raKeyId: 'vendor-2', publicKeySpki: ra2.spki });
    const csr = await csrFor({ commonName: 'M-CA-RA2-1', organizationalUnit: 'indicium' });
    const r = await post({ csr: csr.toString('base64'), raKeyId: 'vendor-2', raSignature: ra2.sign(csr).toString('base64') });
    expect(r.status, JSON.stringify(r.body)).to.equal(201);
  });

  it('gives every certificate a unique random 16-byte positive serial and the profile\'s validity', async () => {
    const csr = await csrFor({ commonName: 'M-CA-SER-1', organizationalUnit: 'indicium' });
    const raSignature = (await w.ra.countersign(csr)).toString('base64');
    const certs = await Promise.all(Array.from({ length: 8 }, () => post({ csr: csr.toString('base64'), raKeyId: RA_KEY_ID, raSignature })));
    const infos = certs.map((r) => readCertInfo(Buffer.from(r.body.certificate as string, 'base64')));
    const serials = infos.map((c) => c.serialHex);
    expect(new Set(serials).size).to.equal(8);
    for (const s of serials) expect(s).to.match(/^[4-7][0-9a-f]{31}$/);
    const all = w.caIssued().map((r) => r.serial);
    expect(new Set(all).size).to.equal(all.length);
    for (const c of infos) {
      const days = (c.notAfter.getTime() - c.notBefore.getTime() - 300_000) / 86_400_000;
      expect(days).to.equal(365);
      expect(c.notBefore.getTime()).to.be.below(Date.now());
    }
  });
});
