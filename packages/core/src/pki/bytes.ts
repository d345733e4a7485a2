/** A standalone ArrayBuffer copy of `b` (pkijs/asn1js want ArrayBuffer, not a Buffer view of a pool). */
export function toArrayBuffer(b: Buffer): ArrayBuffer {
  const out = new ArrayBuffer(b.length);
  new Uint8Array(out).set(b);
  return out;
}
