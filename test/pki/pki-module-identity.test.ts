import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { isVbiError } from '@vbi/core/errors';
import { HttpCaClient } from '@vbi/server/pki/ca-client';
import { hasPurpose, readCertInfo } from '@vbi/core/pki/cert-info';
import { OID } from '@vbi/core/pki/oids';
import { certifyModuleIdentity, verifyModuleSignature } from '@vbi/server/pki/module-identity';
import { CryptoModule } from '@vbi/server/hsm/crypto-module';
import { PkiWorld, openssl, opensslVerify, pemFile, startPkiWorld } from '../pki-fixtures';
import { provisionToken, startModule, uniqueLabel } from '../helpers/hsm';

describe('PKI: module identity certificates (clients verify challenge signatures against the same root)', () => {
  let w: PkiWorld;
  let other: CryptoModule;
  before(async () => {
    w = await startPkiWorld('ident');
    const label = uniqueLabel('ident-other');
    await provisionToken(label);
    other = await startModule(label);
  });
  after(async () => {
    await other.close();
    await w.close();
  });

  it('certifies the identity key of each module; signatures verify against the chain, others do not', async () => {
    const ca = new HttpCaClient(w.server.url);
    const mine = await certifyModuleIdentity({ module: w.module, ca, ra: w.ra, trustRoot: w.rootDer() });
    const theirs = await certifyModuleIdentity({ module: other, ca, ra: w.ra, trustRoot: w.rootDer() });
    const info = readCertInfo(mine.certificateDer);
    expect(info.subject).to.deep.equal({ commonName: w.module.serial, organizationalUnit: 'module-identity' });
    expect(info.spki.equals(w.module.identityPublicKey())).to.equal(true);
    expect(hasPurpose(info, OID.kpModuleIdentity)).to.equal(true);
    const v = await opensslVerify(w.dir, mine.certificateDer, w.rootDer(), mine.chain);
    expect(v.code, v.out).to.equal(0);
    const text = (await openssl('x509', '-noout', '-text', '-in', pemFile(w.dir, 'module.pem', 'CERTIFICATE', mine.certificateDer))).out;
    expect(text).to.match(/Key Usage: critical\s+Digital Signature\s*\n/);

    const challenge = randomBytes(32);
    const signature = await w.module.identitySign(challenge);
    const check = (over: Partial<Parameters<typeof verifyModuleSignature>[0]>) => verifyModuleSignature({
      challenge, signature, certificateDer: mine.certificateDer, chain: mine.chain, anchors: [w.rootDer()], expectedModuleSerial: w.module.serial, ...over,
    });
    expect(check({})).to.equal(true);
    expect(check({ challenge: randomBytes(32) })).to.equal(false);
    expect(check({ signature: await other.identitySign(challenge) }), 'another module signed').to.equal(false);
    expect(check({ certificateDer: theirs.certificateDer, expectedModuleSerial: other.serial }), 'another module\'s certificate').to.equal(false);
    expect(() => check({ certificateDer: theirs.certificateDer }), 'names another module').to.throw().with.property('code', 'CERT_INVALID');
  });

  it('an indicium certificate of the same root is not accepted as a module identity', async () => {
    const meter = await w.metergen.createMeter({ meterId: 'M-IDENT-1', maxDescendingRegister: 1000 });
    const pkg = await w.store.package('M-IDENT-1');
    const challenge = randomBytes(32);
    const signature = await w.module.signWithWrappedKey({ wrappedKey: pkg.secrets.wrappedIndiciumKey, algorithm: 'ec-p256', data: challenge });
    let err: unknown;
    try {
      verifyModuleSignature({ challenge, signature, certificateDer: meter.certificateDer, chain: meter.chain, anchors: [w.rootDer()] });
    } catch (e) {
      err = e;
    }
    expect(isVbiError(err, 'CERT_INVALID'), String(err)).to.equal(true);
    expect((err as Error).message).to.contain('not a module identity certificate');
  });
});
