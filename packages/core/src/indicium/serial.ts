/**
 * Certificate serial numbers as the indicium carries them: the unsigned big-endian magnitude,
 * no leading zero byte, written as lower-case hex. X.509 tools disagree on the spelling
 * (node prints upper case without the DER sign byte, DER content may start with 00), so both
 * sides of a comparison go through canonicalSerialHex.
 */
export function canonicalSerialHex(hex: string): string {
  if (!/^[0-9a-fA-F]+$/.test(hex)) throw new Error(`certificate serial '${hex}' is not hex`);
  let s = hex.toLowerCase().replace(/^0+/, '');
  if (s.length % 2 === 1) s = `0${s}`;
  return s === '' ? '00' : s;
}
