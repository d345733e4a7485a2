import { expect } from 'chai';
import { generateKeyPairSync, sign as nodeSign } from 'node:crypto';
import { isVbiError } from '@vbi/core/errors';
import { TokenSigner } from '@vbi/server/hsm/token-signer';
import { rolloverCa } from '@vbi/server/pki/ca/ca-ceremony';
import { CaDirectory } from '@vbi/server/pki/ca/ca-directory';
import { PostalCa } from '@vbi/server/pki/ca/postal-ca';
import { RunningCa, startCaServer } from '@vbi/server/pki/ca/http-server';
import { linkExtensions, rootExtensions } from '@vbi/server/pki/ca/profile';
import { randomSerial } from '@vbi/server/pki/ca/serial';
import { HttpCaClient } from '@vbi/server/pki/ca-client';
import { buildCertificate } from '@vbi/server/pki/cert-builder';
import { readCertInfo } from '@vbi/core/pki/cert-info';
import { readNextCaKeyHash, spkiHash } from '@vbi/core/pki/extensions';
import { OID } from '@vbi/core/pki/oids';
import { verifyPath } from '@vbi/core/pki/path';
import { RolloverCertificates } from '@vbi/server/pki/rollover';
import { rawEcdsaSigner, X509Signer } from '@vbi/core/pki/signer';
import { TrustStore } from '@vbi/server/pki/trust-store';
import { PkiWorld, openssl, opensslVerify, pemFile, startPkiWorld } from '../pki-fixtures';
import { TEST_SO_PIN, TEST_USER_PIN, testLibrary } from '../helpers/hsm';

function softKey(): { spki: Buffer; signer: X509Signer } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { spki: publicKey.export({ type: 'spki', format: 'der' }) as Buffer, signer: { algorithm: 'ecdsa-sha256', sign: async (tbs) => nodeSign('sha256', tbs, privateKey) } };
}

describe('PKI: CA root rollover (WO 99/41690: signed by the current key, key hash published in advance)', () => {
  let w: PkiWorld;
  let dir: CaDirectory;
  let root1: Buffer;
  let genuine: RolloverCertificates;
  let signer: TokenSigner;
  let server: RunningCa;
  let meterA: Awaited<ReturnType<PkiWorld['metergen']['createMeter']>>;

  /** The officer's rollover runs with the CA service stopped (the SO must log in to the CA token). */
  async function rollover(): Promise<void> {
    await (server ?? w.server).close();
    (signer ?? w.caSigner).close();
    await rolloverCa({ library: testLibrary(), tokenLabel: w.caLabel, soPin: TEST_SO_PIN, userPin: TEST_USER_PIN, dir: w.caDir });
    signer = await TokenSigner.open({ library: testLibrary(), tokenLabel: w.caLabel, userPin: TEST_USER_PIN });
    server = await startCaServer({ ca: await PostalCa.open({ dir: w.caDir, signer }), port: 0 });
  }

  before(async () => {
    w = await startPkiWorld('roll');
    dir = new CaDirectory(w.caDir);
    root1 = dir.readCertificate('root-1.pem');
    meterA = await w.metergen.createMeter({ meterId: 'M-ROLL-A', maxDescendingRegister: 1000 });
    await rollover();
    genuine = { linkCertificate: dir.readCertificate('root-link-2.pem'), rootCertificate: dir.readCertificate('root-2.pem') };
  });
  after(async () => {
    await server.close();
    signer.close();
    await w.close();
  });

  it('publishes the hash of the next root key in a non-critical private extension', async () => {
    const r1 = readCertInfo(root1);
    const nextSpki = await signer.publicKeySpki({ role: 'ca-root', generation: 2 });
    expect(readNextCaKeyHash(r1.cert)?.equals(spkiHash(nextSpki))).to.equal(true);
    const ext = (r1.cert.extensions ?? []).find((e) => e.extnID.startsWith('2.25.'));
    expect(ext?.critical).to.equal(false);
    const text = (await openssl('x509', '-noout', '-text', '-in', pemFile(w.dir, 'root1.pem', 'CERTIFICATE', root1))).out;
    expect(text).to.contain(`${OID.nextCaKeyHash}: \n`);
    expect(text).not.to.match(new RegExp(`${OID.nextCaKeyHash.replace(/\./g, '\\.')}: critical`));
  });

  it('accepts the genuine rollover; new certificates chain to the new root, old ones still verify', async () => {
    const trust = new TrustStore(root1);
    expect(trust.acceptRollover(genuine).equals(genuine.rootCertificate)).to.equal(true);
    expect(trust.current().equals(genuine.rootCertificate)).to.equal(true);
    expect(trust.anchors()).to.have.length(2);
    // OpenSSL: the link certificate is a CA certificate under the old root; the new root stands alone
    const link = await opensslVerify(w.dir, genuine.linkCertificate, root1, []);
    expect(link.code, link.out).to.equal(0);
    const self = await opensslVerify(w.dir, genuine.rootCertificate, genuine.rootCertificate, []);
    expect(self.code, self.out).to.equal(0);

    const metergen = w.metergenWith({ ca: new HttpCaClient(server.url), trust });
    const b = await metergen.createMeter({ meterId: 'M-ROLL-B', maxDescendingRegister: 1000 });
    const v = await opensslVerify(w.dir, b.certificateDer, trust.current(), b.chain);
    expect(v.code, v.out).to.equal(0);
    const oldRoot = await opensslVerify(w.dir, b.certificateDer, root1, b.chain);
    expect(oldRoot.code, 'not under the old root').to.not.equal(0);

    // meter A's certificate (issued before) verifies against the retained old anchor
    const path = verifyPath({ leaf: meterA.certificateDer, intermediates: meterA.chain, anchors: trust.anchors(), at: new Date() });
    expect(path[path.length - 1].der.equals(root1)).to.equal(true);
    const a = await opensslVerify(w.dir, meterA.certificateDer, root1, meterA.chain);
    expect(a.code, a.out).to.equal(0);
  });

  it('a relying party that did not take the rollover refuses certificates under the new root', async () => {
    const stale = w.metergenWith({ ca: new HttpCaClient(server.url), trust: new TrustStore(root1) });
    const err = await stale.createMeter({ meterId: 'M-ROLL-C', maxDescendingRegister: 1000 }).then(() => null, (e) => e);
    expect(isVbiError(err, 'CERT_INVALID'), String(err)).to.equal(true);
    expect(w.store.sealedPackage('M-ROLL-C')).to.equal(undefined);
  });

  it('rejects forged rollovers and keeps the current root', async () => {
    const r1 = readCertInfo(root1);
    const newRoot = readCertInfo(genuine.rootCertificate);
    const now = Date.now();
    const validity = { notBefore: new Date(now - 60_000), notAfter: new Date(now + 86_400_000 * 30) };
    const attacker = softKey();
    const after = softKey();
    const rootKey1 = rawEcdsaSigner((data) => signer.sign({ key: { role: 'ca-root', generation: 1 }, data }));
    const link = (spki: Buffer, by: X509Signer) => buildCertificate({
      serial: randomSerial(), issuer: r1.cert.subject, subject: r1.cert.subject, spki, ...validity,
      extensions: linkExtensions({ spki, nextSpki: after.spki, oldSpki: r1.spki }),
    }, by);
    const selfSigned = (spki: Buffer, by: X509Signer) => buildCertificate({
      serial: randomSerial(), issuer: r1.cert.subject, subject: r1.cert.subject, spki, ...validity,
      extensions: rootExtensions({ spki, nextSpki: after.spki }),
    }, by);
    const attackerRoot = await selfSigned(attacker.spki, attacker.signer);
    const cases: Array<[string, RolloverCertificates, RegExp]> = [
      // knows the (public) next key, but cannot sign with the current root key
      ['link for the published next key, signed by another key', { linkCertificate: await link(newRoot.spki, attacker.signer), rootCertificate: genuine.rootCertificate }, /not signed by the current root key/],
      // signed by the current root key, but for a key whose hash was never published
      ['current key certifies an unpublished key', { linkCertificate: await link(attacker.spki, rootKey1), rootCertificate: attackerRoot }, /does not hash to the value/],
      ['genuine link, root certificate for another key', { linkCertificate: genuine.linkCertificate, rootCertificate: attackerRoot }, /different keys/],
      ['self-signed attacker root alone', { linkCertificate: attackerRoot, rootCertificate: attackerRoot }, /not signed by the current root key/],
      ['not a certificate', { linkCertificate: Buffer.from('3000', 'hex'), rootCertificate: genuine.rootCertificate }, /not a DER X.509 certificate/],
    ];
    const trust = new TrustStore(root1);
    for (const [what, next, why] of cases) {
      let err: unknown = null;
      try {
        trust.acceptRollover(next);
      } catch (e) {
        err = e;
      }
      expect(isVbiError(err, 'ROLLOVER_REJECTED'), `${what}: ${String(err)}`).to.equal(true);
      expect((err as Error).message, what).to.match(why);
      expect(trust.current().equals(root1), what).to.equal(true);
    }
    // after all that, the genuine one is still accepted; presenting it again is rejected (replay)
    trust.acceptRollover(genuine);
    expect(() => trust.acceptRollover(genuine)).to.throw(/not signed by the current root key/);
  });

  it('rolls over again: generation 3 was published by generation 2 and is accepted in turn', async () => {
    const trust = new TrustStore(root1);
    trust.acceptRollover(genuine);
    await rollover();
    const third = { linkCertificate: dir.readCertificate('root-link-3.pem'), rootCertificate: dir.readCertificate('root-3.pem') };
    expect(() => new TrustStore(root1).acceptRollover(third), 'cannot skip a generation').to.throw(/not signed by the current root key/);
    trust.acceptRollover(third);
    expect(dir.readState().rootGeneration).to.equal(3);
    expect(dir.readCertificate('root.pem').equals(third.rootCertificate)).to.equal(true);
    const d = await w.metergenWith({ ca: new HttpCaClient(server.url), trust }).createMeter({ meterId: 'M-ROLL-D', maxDescendingRegister: 1000 });
    const v = await opensslVerify(w.dir, d.certificateDer, trust.current(), d.chain);
    expect(v.code, v.out).to.equal(0);
  });
});
