import { expect } from 'chai';
import { createPublicKey, createVerify } from 'node:crypto';
import { isVbiError } from '@vbi/core/errors';
import { CaClient } from '@vbi/server/pki/ca-client';
import { readCertInfo } from '@vbi/core/pki/cert-info';
import { verifyPath } from '@vbi/core/pki/path';
import { IndiciumKeyAlgorithm } from '@vbi/server/hsm/hsm-module';
import { PkiWorld, opensslVerify, startPkiWorld } from '../pki-fixtures';

/** Verifies a module signature (raw r||s for EC, PKCS#1 v1.5 for RSA) with a certificate's key. */
function verifiesWith(certificateDer: Buffer, algorithm: IndiciumKeyAlgorithm, data: Buffer, signature: Buffer): boolean {
  const key = createPublicKey({ key: readCertInfo(certificateDer).spki, format: 'der', type: 'spki' });
  const v = createVerify('sha256').update(data);
  return algorithm === 'ec-p256' ? v.verify({ key, dsaEncoding: 'ieee-p1363' }, signature) : v.verify(key, signature);
}

describe('PKI: indicium key renewal', () => {
  let w: PkiWorld;
  before(async () => {
    w = await startPkiWorld('renew');
  });
  after(() => w.close());

  /** What the indicium command does: unwrap the package's key in the module and sign. */
  async function signAsIndicium(meterId: string, data: Buffer): Promise<{ signature: Buffer; serial: string; algorithm: IndiciumKeyAlgorithm }> {
    const pkg = await w.store.package(meterId);
    const algorithm = pkg.indiciumKeyAlgorithm as IndiciumKeyAlgorithm;
    return { signature: await w.module.signWithWrappedKey({ wrappedKey: pkg.secrets.wrappedIndiciumKey, algorithm, data }), serial: pkg.indiciumCertSerial, algorithm };
  }

  it('swaps key, serial and expiry atomically; indicia signed before the swap still verify with the old certificate', async () => {
    const first = await w.metergen.createMeter({ meterId: 'M-RENEW-1', maxDescendingRegister: 1000 });
    const before = await w.store.package('M-RENEW-1');
    const oldData = Buffer.from('indicium printed before the renewal');
    const old = await signAsIndicium('M-RENEW-1', oldData);
    expect(old.serial).to.equal(first.serialHex);

    const renewed = await w.metergen.renewKey({ meterId: 'M-RENEW-1' });
    expect(renewed.previousSerialHex).to.equal(first.serialHex);
    expect(renewed.serialHex).to.not.equal(first.serialHex);

    const after = await w.store.package('M-RENEW-1');
    expect(after).to.deep.include({ indiciumCertSerial: renewed.serialHex, indiciumKeyAlgorithm: 'ec-p256', indiciumKeyExpiry: renewed.keyExpiry, state: 'unassigned' });
    expect(after.secrets.wrappedIndiciumKey.equals(before.secrets.wrappedIndiciumKey)).to.equal(false);
    // everything else in the package is untouched
    expect(after.secrets.wrappedUserSecretsKey.equals(before.secrets.wrappedUserSecretsKey)).to.equal(true);
    expect(after).to.deep.include({ descendingRegister: before.descendingRegister, ascendingRegister: before.ascendingRegister, maxDescendingRegister: 1000 });
    expect(after.recordCounter).to.equal(before.recordCounter + 1);

    // the verifier looks the old serial up and the old indicium verifies; the old cert is still valid
    const oldRecord = await w.certificates.getBySerial(old.serial);
    expect(oldRecord?.meterId).to.equal('M-RENEW-1');
    expect(verifiesWith(oldRecord!.certificateDer, old.algorithm, oldData, old.signature)).to.equal(true);
    verifyPath({ leaf: oldRecord!.certificateDer, intermediates: w.ca.chain(), anchors: w.trust.anchors(), at: new Date() });
    // new indicia carry the new serial and verify with the new certificate only
    const newData = Buffer.from('indicium printed after the renewal');
    const now = await signAsIndicium('M-RENEW-1', newData);
    expect(now.serial).to.equal(renewed.serialHex);
    const newRecord = await w.certificates.getBySerial(now.serial);
    expect(verifiesWith(newRecord!.certificateDer, 'ec-p256', newData, now.signature)).to.equal(true);
    expect(verifiesWith(oldRecord!.certificateDer, 'ec-p256', newData, now.signature)).to.equal(false);
    expect(verifiesWith(newRecord!.certificateDer, 'ec-p256', oldData, old.signature)).to.equal(false);
    const v = await opensslVerify(w.dir, renewed.certificateDer, w.rootDer(), renewed.chain);
    expect(v.code, v.out).to.equal(0);
    expect(w.engine.ringEntries().map((e) => e.checkpoint.type).slice(-1)).to.deep.equal(['key-renewal']);

    // a second renewal may change the algorithm (EC P-256 to RSA-2048); both older serials stay findable
    const third = await w.metergen.renewKey({ meterId: 'M-RENEW-1', algorithm: 'rsa-2048' });
    expect((await w.store.package('M-RENEW-1')).indiciumKeyAlgorithm).to.equal('rsa-2048');
    const rsaData = Buffer.from('indicium printed with the RSA key');
    const rsa = await signAsIndicium('M-RENEW-1', rsaData);
    expect(verifiesWith(third.certificateDer, 'rsa-2048', rsaData, rsa.signature)).to.equal(true);
    expect((await w.certificates.listByMeter('M-RENEW-1')).map((r) => r.serialHex)).to.have.members([first.serialHex, renewed.serialHex, third.serialHex]);
    expect(verifiesWith((await w.certificates.getBySerial(first.serialHex))!.certificateDer, 'ec-p256', oldData, old.signature)).to.equal(true);
  });

  it('a failed renewal leaves the package exactly as it was', async () => {
    await w.metergen.createMeter({ meterId: 'M-RENEW-2', maxDescendingRegister: 1000 });
    const sealed = w.store.sealedPackage('M-RENEW-2') as Buffer;
    const refusing: CaClient = { requestCertificate: async () => { throw new Error('down'); } };
    const err = await w.metergenWith({ ca: refusing }).renewKey({ meterId: 'M-RENEW-2' }).then(() => null, (e) => e);
    expect((err as Error).message).to.equal('down');
    expect((w.store.sealedPackage('M-RENEW-2') as Buffer).equals(sealed)).to.equal(true);
    // the pending key was abandoned: it can no longer be committed
    const stale = await w.store.commitKeyRenewal({ meterId: 'M-RENEW-2', renewalId: 'nope', certificateDer: Buffer.alloc(0), serialHex: '00', notAfter: 0 }).then(() => null, (e) => e);
    expect(isVbiError(stale, 'RENEWAL_NOT_FOUND'), String(stale)).to.equal(true);
  });

  it('refuses to renew an uncertified meter, and to certify a certified one twice', async () => {
    await w.store.createUncertifiedMeter({ meterId: 'M-RENEW-3', algorithm: 'ec-p256', maxDescendingRegister: 1000 });
    const err = await w.metergen.renewKey({ meterId: 'M-RENEW-3' }).then(() => null, (e) => e);
    expect(isVbiError(err, 'METER_NOT_CERTIFIED'), String(err)).to.equal(true);
    const m = await w.metergen.createMeter({ meterId: 'M-RENEW-4', maxDescendingRegister: 1000 });
    const again = await w.store.certifyMeter({ meterId: 'M-RENEW-4', certificateDer: m.certificateDer, serialHex: m.serialHex, notAfter: m.keyExpiry }).then(() => null, (e) => e);
    expect(isVbiError(again, 'METER_ALREADY_CERTIFIED'), String(again)).to.equal(true);
    const discard = await w.store.discardMeter('M-RENEW-4').then(() => null, (e) => e);
    expect(isVbiError(discard, 'METER_ALREADY_CERTIFIED'), String(discard)).to.equal(true);
  });

  it('bounds the key lifetime by the configured limit and by the certificate, and says when renewal is due', async () => {
    let clock = Date.now();
    const mg = w.metergenWith({ keyLifetimeMs: 30 * 86_400_000, clock: () => clock });
    const m = await mg.createMeter({ meterId: 'M-RENEW-5', maxDescendingRegister: 1000 });
    expect(m.keyExpiry).to.equal(clock + 30 * 86_400_000);
    expect(m.keyExpiry).to.be.below(readCertInfo(m.certificateDer).notAfter.getTime());
    expect((await w.store.package('M-RENEW-5')).indiciumKeyExpiry).to.equal(m.keyExpiry);
    expect(mg.renewalDue(m.keyExpiry, 7 * 86_400_000)).to.equal(false);
    clock += 24 * 86_400_000;
    expect(mg.renewalDue(m.keyExpiry, 7 * 86_400_000)).to.equal(true);
  });
});
