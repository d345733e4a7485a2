import { decodeTlv, encodeTlv, TlvError } from './tlv';

/**
 * The "user secrets" field of a PSD package (WO 01/29778): the mailer's HMAC key (HMK), wrapped
 * under the meter's user-secrets key inside a token, and the password verifier
 * HMAC-SHA256(password secret, "VBI-PASSWORD-VERIFIER" || meter id), computed inside a token.
 * Neither the HMK nor the password ever exists in clear outside a token or the client.
 * Tags are persisted: never renumber.
 */
export interface UserSecrets {
  wrappedHmk: Buffer;
  passwordVerifier: Buffer;
}

const T = { wrappedHmk: 1, passwordVerifier: 2 } as const;

export function encodeUserSecrets(u: UserSecrets): Buffer {
  if (u.passwordVerifier.length !== 32) throw new TlvError('password verifier must be 32 bytes');
  return encodeTlv([[T.wrappedHmk, u.wrappedHmk], [T.passwordVerifier, u.passwordVerifier]]);
}

export function decodeUserSecrets(b: Buffer): UserSecrets | null {
  if (b.length === 0) return null;
  const f = decodeTlv(b, Object.values(T));
  return { wrappedHmk: Buffer.from(f.get(T.wrappedHmk) as Buffer), passwordVerifier: Buffer.from(f.get(T.passwordVerifier) as Buffer) };
}

export function passwordVerifierInput(meterId: string): Buffer {
  return Buffer.from(`VBI-PASSWORD-VERIFIER\n${meterId}`, 'utf8');
}
