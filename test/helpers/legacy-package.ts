import { HsmModule } from '@vbi/server/hsm/hsm-module';
import { sealEncoded } from '@vbi/server/module/package-seal';
import { PsdPackage } from '@vbi/core/psd/psd-package';
import { encodeTlv, str, u64, u8 } from '@vbi/core/psd/tlv';

/*
 * A package as the releases before the piece counter sealed it: the public section has tags 1
 * to 13 and no tag 14. Built here with the TLV encoder field by field (not with encodePublic,
 * which always writes tag 14), then framed, encrypted and MAC'd by the module exactly as
 * docs/psd-package.md lays a sealed package out.
 */

const STATES = ['unassigned', 'active', 'suspended', 'closed'];
const ALGORITHMS = [null, 'ec-p256', 'rsa-2048'];

/** The public section of `p` without tag 14 (the layout of format version 1 before the piece counter). */
export function publicWithoutPieceCounter(p: PsdPackage): Buffer {
  return encodeTlv([
    [1, str(p.meterId)],
    [2, u64(p.recordCounter)],
    [3, u8(STATES.indexOf(p.state))],
    [4, u64(p.ascendingRegister)],
    [5, u64(p.descendingRegister)],
    [6, u64(p.maxDescendingRegister)],
    [7, u64(p.refundRegister)],
    [8, str(p.licensingZip)],
    [9, str(p.indiciumCertSerial)],
    [10, u8(ALGORITHMS.indexOf(p.indiciumKeyAlgorithm))],
    [11, u64(p.indiciumKeyExpiry)],
    [12, u64(p.userSecretsExpiry)],
    [13, u64(p.lastTransactionTime)],
  ]);
}

/** `p` sealed by `hsm` as an old release did: no piece counter in it (`p.pieceCounter` is not written). */
export function sealWithoutPieceCounter(hsm: HsmModule, p: PsdPackage): Promise<Buffer> {
  return sealEncoded(hsm, publicWithoutPieceCounter(p), p.secrets);
}

/** The public section of a sealed package, unverified (to look at its tags). */
export function publicSectionOf(sealed: Buffer): Buffer {
  const len = sealed.readUInt32BE(6);
  return sealed.subarray(10, 10 + len);
}
