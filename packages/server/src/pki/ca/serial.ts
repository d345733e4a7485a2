import { randomBytes } from 'node:crypto';

/**
 * A fresh certificate serial: 16 random bytes with the top two bits fixed to 01, so the
 * INTEGER is positive, exactly 16 bytes, minimally encoded (no 00 sign byte) and carries 126
 * random bits (CA/Browser Forum asks for at least 64). Uniqueness per CA is still enforced
 * by the CA's index of issued serials.
 */
export function randomSerial(): Buffer {
  const b = randomBytes(16);
  b[0] = 0x40 | (b[0] & 0x3f);
  return b;
}
