import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { CryptoModule } from '@vbi/server/hsm/crypto-module';
import { newPackage, PsdPackage, encodePublic, decodePublic, PUBLIC_TAGS } from '@vbi/core/psd/psd-package';
import { openPackage, sealPackage } from '@vbi/server/module/package-seal';
import { decodeTlv, encodeTlv, TlvError, u64 } from '@vbi/core/psd/tlv';
import { VbiError, isVbiError } from '@vbi/core/errors';
import { provisionToken, startModule, uniqueLabel } from '../helpers/hsm';
import { publicSectionOf, publicWithoutPieceCounter, sealWithoutPieceCounter } from '../helpers/legacy-package';

const REJECTIONS = ['PACKAGE_MALFORMED', 'PACKAGE_MAC_INVALID', 'PACKAGE_VERSION_UNSUPPORTED', 'PACKAGE_SUITE_MISMATCH', 'PACKAGE_DECRYPT_FAILED'];

function fullPackage(meterId: string): PsdPackage {
  const p = newPackage({ meterId, maxDescendingRegister: 1_000_000, licensingZip: '20260' });
  return {
    ...p,
    recordCounter: 41,
    pieceCounter: 17,
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

    it('opens a package sealed before the piece counter (no tag 14) with piece counter = record counter; re-sealed, it carries tag 14', async () => {
      const pkg = fullPackage('M-OLD-1');
      const old = await sealWithoutPieceCounter(m, pkg);
      expect(decodeTlv(publicSectionOf(old), [], Object.values(PUBLIC_TAGS)).has(PUBLIC_TAGS.pieceCounter)).to.equal(false);
      const opened = await openPackage(m, old, 'M-OLD-1');
      // that release had no licence tags either: grandfathered as licensed (docs/psd-package.md)
      expect(opened).to.deep.equal({ ...pkg, pieceCounter: 41, licence: 'licensed', licenceId: '' });
      const again = await sealPackage(m, { ...opened, pieceCounter: opened.pieceCounter + 1 });
      const tags = decodeTlv(publicSectionOf(again), [], Object.values(PUBLIC_TAGS));
      expect(tags.get(PUBLIC_TAGS.pieceCounter)).to.deep.equal(u64(42));
      expect(await openPackage(m, again, 'M-OLD-1')).to.deep.include({ recordCounter: 41, pieceCounter: 42 });
      // the MAC covers the tag: a new package with tag 14 stripped is refused
      const pub = publicSectionOf(again);
      const at = pub.length - 11 - licenceTail(opened);
      const withoutTag14 = Buffer.concat([pub.subarray(0, at), pub.subarray(at + 11)]);
      const len = Buffer.alloc(4);
      len.writeUInt32BE(withoutTag14.length);
      const stripped = Buffer.concat([again.subarray(0, 6), len, withoutTag14, again.subarray(10 + pub.length)]);
      const err = await openPackage(m, stripped, 'M-OLD-1').then(() => null, (e: unknown) => e);
      expect(isVbiError(err, 'PACKAGE_MAC_INVALID'), String(err)).to.equal(true);
    });

    it('rejects the package of meter A presented as meter B', async () => {
      const sealed = await sealPackage(m, fullPackage('M-AAA-1'));
      const err = await openPackage(m, sealed, 'M-BBB-1').then(() => null, (e: unknown) => e);
      expect(isVbiError(err, 'PACKAGE_METER_MISMATCH'), String(err)).to.equal(true);
    });
  });
}

/** The bytes of the licence tags (15, 16) that end a public section of this release. */
function licenceTail(p: { licenceId: string }): number {
  return encodeTlv([[PUBLIC_TAGS.licence, Buffer.alloc(1)], [PUBLIC_TAGS.licenceId, Buffer.from(p.licenceId, 'utf8')]]).length;
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

  it('the piece counter is tag 14, after tag 13 and before the licence tags, u64; persisted apart from the record counter', () => {
    const p = fullPackage('M-PIECE-1');
    const pub = encodePublic(p);
    expect(PUBLIC_TAGS.pieceCounter).to.equal(14);
    const at = pub.length - 11 - licenceTail(p);
    expect(pub.subarray(at, at + 11)).to.deep.equal(Buffer.concat([Buffer.from([14, 0, 8]), u64(17)]));
    expect(decodePublic(pub)).to.deep.include({ recordCounter: 41, pieceCounter: 17 });
  });

  it('a public section without tag 14 decodes with piece counter = record counter; a bad tag 14 is refused', () => {
    const p = fullPackage('M-PIECE-2');
    const old = publicWithoutPieceCounter(p);
    expect(old.equals(encodePublic(p).subarray(0, old.length))).to.equal(true); // tags 1..13 are the same bytes
    expect(decodePublic(old)).to.deep.equal({ ...decodePublic(encodePublic(p)), pieceCounter: 41, licence: 'licensed', licenceId: '' });
    const field13 = encodePublic(p).subarray(old.length - 11, old.length);
    const table: Array<[string, Buffer]> = [
      ['4-byte piece counter', Buffer.concat([old, Buffer.from([14, 0, 4, 0, 0, 0, 1])])],
      ['piece counter out of range', Buffer.concat([old, Buffer.from([14, 0, 8]), Buffer.alloc(8, 0xff)])],
      ['piece counter twice', Buffer.concat([old, Buffer.from([14, 0, 8]), u64(1), Buffer.from([14, 0, 8]), u64(2)])],
      ['piece counter before tag 13', Buffer.concat([old.subarray(0, old.length - 11), Buffer.from([14, 0, 8]), u64(1), field13])],
      ['tag 15 after tag 16', Buffer.concat([encodePublic(p), Buffer.from([15, 0, 1, 1])])],
      ['tag 17 (unknown)', Buffer.concat([encodePublic(p), Buffer.from([17, 0, 0])])],
    ];
    for (const [what, buf] of table) expect(() => decodePublic(buf), what).to.throw(TlvError);
  });

  it('refuses money that is not a safe non-negative integer', () => {
    for (const bad of [-1, 1.5, Number.MAX_SAFE_INTEGER + 1, NaN]) {
      expect(() => encodePublic({ ...fullPackage('M-BAD-1'), descendingRegister: bad }), String(bad)).to.throw(TlvError);
    }
  });
});
