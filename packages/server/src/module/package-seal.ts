import { vbiError, VbiError } from '@vbi/core/errors';
import { HsmModule } from '../hsm/hsm-module';
import { SUITE_ID } from '../hsm/mechanisms';
import { PsdPackage, encodePublic, decodePublic, encodeSecrets, decodeSecrets } from '@vbi/core/psd/psd-package';
import { TlvError } from '@vbi/core/psd/tlv';

/**
 * Sealed PSD package, format version 1 (docs/psd-package.md):
 *
 *   "VBIP" | version u8 | suite u8 | publicLen u32 | public TLV | secretLen u32 | secret ciphertext | macLen u8 | MAC
 *
 * The secret section is encrypted under the package encryption key (AES-256-GCM with
 * AAD = header || public section, or 3DES-CBC in the legacy suite); the MAC (package MAC key,
 * AES-CMAC or DES3-CMAC) covers every byte before macLen. The magic doubles as MAC domain
 * separation from checkpoint records ("VBIC"), which use the same MAC key.
 */
export const PACKAGE_MAGIC = Buffer.from('VBIP', 'ascii');
export const PACKAGE_FORMAT_VERSION = 1;
const MAC_BYTES = { aes: 16, 'legacy-3des': 8 } as const;

export function sealPackage(hsm: HsmModule, pkg: PsdPackage): Promise<Buffer> {
  return sealEncoded(hsm, encodePublic(pkg), pkg.secrets);
}

/** The sealed frame around public fields already encoded (the tests seal an older release's encoding with it). */
export async function sealEncoded(hsm: HsmModule, pub: Buffer, secrets: PsdPackage['secrets']): Promise<Buffer> {
  const header = Buffer.from([...PACKAGE_MAGIC, PACKAGE_FORMAT_VERSION, SUITE_ID[hsm.suite]]);
  const secret = await hsm.encryptSecrets({ plaintext: encodeSecrets(secrets), aad: Buffer.concat([header, pub]) });
  const body = Buffer.concat([header, len32(pub.length), pub, len32(secret.length), secret]);
  const mac = await hsm.mac(body);
  return Buffer.concat([body, Buffer.from([mac.length]), mac]);
}

/**
 * Verifies and decrypts a sealed package. Rejects, before anything is used, a package that
 * is not well formed, whose MAC fails (any changed byte), or that belongs to another meter.
 */
export async function openPackage(hsm: HsmModule, sealed: Buffer, expectedMeterId: string): Promise<PsdPackage> {
  const frame = parseFrame(sealed, hsm.suite);
  // MAC check and decryption in one round of token trips, side by side; the plaintext (or the
  // decryption's error) is looked at only once the MAC verified and the meter id matched
  const [macOk, decrypted] = await Promise.all([
    hsm.verifyMac(frame.body, frame.mac),
    hsm.decryptSecrets({ ciphertext: frame.secret, aad: Buffer.concat([frame.header, frame.pub]) }).then(
      (plain) => ({ plain }),
      (error: unknown) => ({ error }),
    ),
  ]);
  if (!macOk) {
    throw vbiError('PACKAGE_MAC_INVALID', `package presented for meter ${expectedMeterId} fails its MAC`);
  }
  try {
    const pub = decodePublic(frame.pub);
    if (pub.meterId !== expectedMeterId) {
      throw vbiError('PACKAGE_METER_MISMATCH', `package of meter ${pub.meterId} presented as meter ${expectedMeterId}`);
    }
    if ('error' in decrypted) throw decrypted.error;
    return { ...pub, secrets: decodeSecrets(decrypted.plain) };
  } catch (e) {
    if (e instanceof VbiError) throw e;
    if (e instanceof TlvError) throw vbiError('PACKAGE_MALFORMED', e.message);
    throw e;
  }
}

/** The meter ID of a sealed package without verifying it (for logs and lookups only). */
export function peekMeterId(sealed: Buffer): string | undefined {
  try {
    return decodePublic(parseFrame(sealed, undefined).pub).meterId;
  } catch {
    return undefined;
  }
}

interface Frame { header: Buffer; pub: Buffer; secret: Buffer; body: Buffer; mac: Buffer }

function parseFrame(b: Buffer, suite: keyof typeof MAC_BYTES | undefined): Frame {
  const malformed = (why: string) => vbiError('PACKAGE_MALFORMED', `sealed package: ${why}`);
  if (b.length < 6 || !b.subarray(0, 4).equals(PACKAGE_MAGIC)) throw malformed('bad magic');
  if (b[4] !== PACKAGE_FORMAT_VERSION) throw vbiError('PACKAGE_VERSION_UNSUPPORTED', `package format version ${b[4]}`);
  if (suite && b[5] !== SUITE_ID[suite]) throw vbiError('PACKAGE_SUITE_MISMATCH', `package suite ${b[5]}, module suite '${suite}'`);
  let off = 6;
  const take = (n: number, what: string) => {
    if (off + n > b.length) throw malformed(`${what} runs past the end`);
    const v = b.subarray(off, off + n);
    off += n;
    return v;
  };
  const pub = take(take(4, 'public length').readUInt32BE(), 'public section');
  const secret = take(take(4, 'secret length').readUInt32BE(), 'secret section');
  const bodyEnd = off;
  const macLen = take(1, 'mac length')[0];
  if (suite && macLen !== MAC_BYTES[suite]) throw malformed(`mac length ${macLen}`);
  const mac = take(macLen, 'mac');
  if (off !== b.length) throw malformed('trailing bytes');
  return { header: b.subarray(0, 6), pub, secret, body: b.subarray(0, bodyEnd), mac };
}

function len32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}
