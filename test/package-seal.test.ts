import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { CryptoModule } from '../src/hsm/crypto-module';
import { newPackage, PsdPackage, encodePublic, decodePublic } from '../src/psd/psd-package';
import { openPackage, sealPackage } from '../src/module/package-seal';
import { decodeTlv, encodeTlv, TlvError } from '../src/psd/tlv';
import { VbiError, isVbiError } from '../src/errors';
import { provisionToken, startModule, uniqueLabel } from './helpers/hsm';

const REJECTIONS = ['PACKAGE_MALFORMED', 'PACKAGE_MAC_INVALID', 'PACKAGE_VERSION_UNSUPPORTED', 'PACKAGE_SUITE_MISMATCH', 'PACKAGE_DECRYPT_FAILED'];

function fullPackage(meterId: string): PsdPackage {
  const p = newPackage({ meterId, maxDescendingRegister: 1_000_000, licensingZip: '20260' });
  return {
    ...p,
    recordCounter: 41,
    state: 'active',
    ascendingRegister: 12_345,
    descendingRegister: 987_655,
    refundRegister: 730,
    indiciumCertSerial: '0a1b2c3d4e5f',
    indiciumKeyAlgorithm: 'ec-p256',
    indiciumKeyExpiry: Date.UTC(2029, 0, 1),
    userSecretsExpiry: Date.UTC(2028, 0, 1),
    lastTransactionTime: Date.UTC(2026, 10, 21, 12),
    secrets: {
      wrappedIndiciumKey: randomBytes(160),
      wrappedUserSecretsKey: randomBytes(40),
      userSecrets: randomBytes(64),
      lastChallenge: randomBytes(32),
      passphraseHistory: [randomBytes(32), randomBytes(32)],
    },
  };
}

for (const suite of ['aes', 'legacy-3des'] as const) {
  describe(`sealed PSD packages (${suite} suite)`, () => {
    const label = uniqueLabel(`seal-${suite === 'aes' ? 'aes' : '3des'}`);
    let m: CryptoModule;
    before(async () => {
      await provisionToken(label, suite);
      m = await startModule(label, suite);
      expect(m.status().state, m.status().reason).to.equal('Idle');
    });
    after(() => m.close());

    it('round-trips every field', async () => {
      const pkg = fullPackage('M-ROUND-1');
      const sealed = await sealPackage(m, pkg);
      expect(await openPackage(m, sealed, 'M-ROUND-1')).to.deep.equal(pkg);
    });

    it('keeps secrets out of the clear bytes', async () => {
      const pkg = fullPackage('M-SECRET-1');
      const sealed = await sealPackage(m, pkg);
      for (const secret of [pkg.secrets.wrappedIndiciumKey, pkg.secrets.userSecrets, pkg.secrets.lastChallenge, pkg.secrets.passphraseHistory[0]]) {
        expect(sealed.includes(secret.subarray(0, 16))).to.equal(false);
      }
    });

    it('rejects every single-byte change with a typed error', async () => {
      const sealed = await sealPackage(m, fullPackage('M-FLIP-1'));
      for (let i = 0; i < sealed.length; i++) {
        const bad = Buffer.from(sealed);
        bad[i] ^= 0x01 << (i % 8);
        const err = await openPackage(m, bad, 'M-FLIP-1').then(() => null, (e: unknown) => e);
        expect(err, `byte ${i} of ${sealed.length}`).to.be.instanceOf(VbiError);
        expect(REJECTIONS, `byte ${i}: ${(err as VbiError).code}`).to.include((err as VbiError).code);
      }
    });

    it('rejects truncation and appended bytes', async () => {
      const sealed = await sealPackage(m, fullPackage('M-TRUNC-1'));
      for (const bad of [sealed.subarray(0, sealed.length - 1), Buffer.concat([sealed, Buffer.from([0])]), sealed.subarray(0, 10)]) {
        const err = await openPackage(m, bad, 'M-TRUNC-1').then(() => null, (e: unknown) => e);
        expect(REJECTIONS).to.include((err as VbiError).code);
      }
    });

    it('rejects the package of meter A presented as meter B', async () => {
      const sealed = await sealPackage(m, fullPackage('M-AAA-1'));
      const err = await openPackage(m, sealed, 'M-BBB-1').then(() => null, (e: unknown) => e);
      expect(isVbiError(err, 'PACKAGE_METER_MISMATCH'), String(err)).to.equal(true);
    });
  });
}

describe('package codec', () => {
  it('has exactly one encoding: out-of-order, repeated, unknown and missing tags are refused', () => {
    const ok = encodeTlv([[1, Buffer.from('a')], [2, Buffer.from('b')]]);
    expect(decodeTlv(ok, [1, 2]).size).to.equal(2);
    const table: Array<[string, Buffer]> = [
      ['out of order', Buffer.concat([ok.subarray(4), ok.subarray(0, 4)])],
      ['repeated', Buffer.concat([ok.subarray(0, 4), ok.subarray(0, 4), ok.subarray(4)])],
      ['unknown tag', Buffer.concat([ok, Buffer.from([9, 0, 0])])],
      ['missing tag', ok.subarray(0, 4)],
      ['truncated', ok.subarray(0, ok.length - 1)],
    ];
    for (const [what, buf] of table) expect(() => decodeTlv(buf, [1, 2]), what).to.throw(TlvError);
  });

  it('swapping two register fields changes the bytes (so the MAC breaks)', () => {
    const p = fullPackage('M-SWAP-1');
    const swapped = { ...p, ascendingRegister: p.descendingRegister, descendingRegister: p.ascendingRegister };
    expect(encodePublic(swapped).equals(encodePublic(p))).to.equal(false);
    expect(decodePublic(encodePublic(p))).to.deep.include({ ascendingRegister: 12_345, descendingRegister: 987_655 });
  });

  it('refuses money that is not a safe non-negative integer', () => {
    for (const bad of [-1, 1.5, Number.MAX_SAFE_INTEGER + 1, NaN]) {
      expect(() => encodePublic({ ...fullPackage('M-BAD-1'), descendingRegister: bad }), String(bad)).to.throw(TlvError);
    }
  });
});
