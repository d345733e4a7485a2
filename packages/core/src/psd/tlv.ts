/**
 * A strict tag-length-value codec for persisted records: tag u8, length u16 big-endian, value.
 * Decoding is canonical: tags must appear in ascending order, each at most once, every
 * required tag must be present and nothing may follow the last field. A record therefore has
 * exactly one encoding, which is what the MACs are computed over.
 */
export class TlvError extends Error {}

export type Fields = Map<number, Buffer>;

export function encodeTlv(fields: Array<[number, Buffer]>): Buffer {
  const parts: Buffer[] = [];
  let last = -1;
  for (const [tag, value] of fields) {
    if (tag <= last || tag > 0xff) throw new TlvError(`tag ${tag} out of order`);
    if (value.length > 0xffff) throw new TlvError(`field ${tag} too long (${value.length} bytes)`);
    last = tag;
    const head = Buffer.alloc(3);
    head.writeUInt8(tag, 0);
    head.writeUInt16BE(value.length, 1);
    parts.push(head, value);
  }
  return Buffer.concat(parts);
}

export function decodeTlv(buf: Buffer, required: readonly number[], optional: readonly number[] = []): Fields {
  const out: Fields = new Map();
  let off = 0;
  let last = -1;
  while (off < buf.length) {
    if (off + 3 > buf.length) throw new TlvError('truncated field header');
    const tag = buf.readUInt8(off);
    const len = buf.readUInt16BE(off + 1);
    off += 3;
    if (tag <= last) throw new TlvError(`tag ${tag} out of order or repeated`);
    if (!required.includes(tag) && !optional.includes(tag)) throw new TlvError(`unknown tag ${tag}`);
    if (off + len > buf.length) throw new TlvError(`field ${tag} runs past the end`);
    out.set(tag, buf.subarray(off, off + len));
    off += len;
    last = tag;
  }
  for (const t of required) if (!out.has(t)) throw new TlvError(`missing field ${t}`);
  return out;
}

/** Money and counters: unsigned 64-bit big-endian, limited to JavaScript's safe integers. */
export function u64(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) throw new TlvError(`not a non-negative safe integer: ${n}`);
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

export function readU64(b: Buffer, what: string): number {
  if (b.length !== 8) throw new TlvError(`${what}: expected 8 bytes`);
  const v = b.readBigUInt64BE();
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new TlvError(`${what}: out of range`);
  return Number(v);
}

export function u8(n: number): Buffer {
  return Buffer.from([n]);
}

export function readU8(b: Buffer, what: string): number {
  if (b.length !== 1) throw new TlvError(`${what}: expected 1 byte`);
  return b[0];
}

export function str(s: string): Buffer {
  return Buffer.from(s, 'utf8');
}

export function readStr(b: Buffer, what: string, pattern: RegExp): string {
  const s = b.toString('utf8');
  if (!pattern.test(s) || !Buffer.from(s, 'utf8').equals(b)) throw new TlvError(`${what}: invalid value`);
  return s;
}
