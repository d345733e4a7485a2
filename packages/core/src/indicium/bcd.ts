/**
 * Packed BCD for digit strings in the indicium: two digits per byte, high nibble first, the
 * unused tail filled with 0xF nibbles. A hex dump shows the digits as written ("20 26 01 15").
 */
export class BcdError extends Error {}

/** Packs `digits` left-aligned into `size` bytes, filling the rest with F nibbles. */
export function encodeBcd(digits: string, size: number): Buffer {
  if (!/^\d*$/.test(digits) || digits.length > size * 2) throw new BcdError(`cannot pack '${digits}' into ${size} bytes`);
  const out = Buffer.alloc(size, 0xff);
  for (let i = 0; i < digits.length; i++) {
    const d = digits.charCodeAt(i) - 48;
    const byte = i >> 1;
    out[byte] = i % 2 === 0 ? (d << 4) | 0x0f : (out[byte] & 0xf0) | d;
  }
  return out;
}

/**
 * Unpacks digits; strict: only 0-9 then only F nibbles, and the digit count must be one of
 * `lengths`. Any other byte string throws, so each value has exactly one encoding.
 */
export function decodeBcd(buf: Buffer, lengths: readonly number[]): string {
  let digits = '';
  let filler = false;
  for (let i = 0; i < buf.length * 2; i++) {
    const nibble = i % 2 === 0 ? buf[i >> 1] >> 4 : buf[i >> 1] & 0x0f;
    if (nibble === 0x0f) filler = true;
    else if (nibble > 9 || filler) throw new BcdError('not packed BCD');
    else digits += String(nibble);
  }
  if (!lengths.includes(digits.length)) throw new BcdError(`${digits.length} digits where ${lengths.join(' or ')} are allowed`);
  return digits;
}
