import { deflateSync } from 'node:zlib';

/**
 * Just enough PNG for the barcode and the label: an 8-bit grayscale encoder, a pHYs chunk so
 * that printers and viewers know the intended resolution (a 15-mil module only stays 15 mil
 * if the image is printed at the dpi it was rendered for), and reading the size of a PNG.
 */
const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Encodes 8-bit grayscale pixels (row-major, 0 = black, 255 = white) with a pHYs of `dpi`. */
export function encodeGrayPng(req: { width: number; height: number; pixels: Uint8Array; dpi: number }): Buffer {
  const { width, height, pixels } = req;
  if (pixels.length !== width * height) throw new Error('pixel count does not match the size');
  const raw = Buffer.alloc((width + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (width + 1)] = 0; // filter: none
    raw.set(pixels.subarray(y * width, (y + 1) * width), y * (width + 1) + 1);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 0, 0, 0, 0], 8); // bit depth 8, colour type 0 (gray), deflate, filter 0, no interlace
  return Buffer.concat([SIGNATURE, chunk('IHDR', ihdr), physChunk(req.dpi), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

/** Returns `png` with its pHYs chunk (if any) replaced by one for `dpi`, placed after IHDR. */
export function setPngDpi(png: Buffer, dpi: number): Buffer {
  const chunks = readChunks(png);
  const kept = chunks.filter((c) => c.type !== 'pHYs');
  const [ihdr, ...rest] = kept;
  return Buffer.concat([SIGNATURE, ihdr.bytes, physChunk(dpi), ...rest.map((c) => c.bytes)]);
}

/** Width and height of a PNG, or null when `png` is not one. */
export function pngSize(png: Buffer): { width: number; height: number } | null {
  if (png.length < 24 || !png.subarray(0, 8).equals(SIGNATURE) || png.toString('latin1', 12, 16) !== 'IHDR') return null;
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

/** Pixels per inch from the pHYs chunk, or null without one. */
export function pngDpi(png: Buffer): number | null {
  const phys = readChunks(png).find((c) => c.type === 'pHYs');
  if (!phys || phys.data[8] !== 1) return null;
  return Math.round(phys.data.readUInt32BE(0) * 0.0254);
}

function physChunk(dpi: number): Buffer {
  const data = Buffer.alloc(9);
  const perMetre = Math.round(dpi / 0.0254);
  data.writeUInt32BE(perMetre, 0);
  data.writeUInt32BE(perMetre, 4);
  data[8] = 1; // unit: metre
  return chunk('pHYs', data);
}

function readChunks(png: Buffer): Array<{ type: string; data: Buffer; bytes: Buffer }> {
  if (!png.subarray(0, 8).equals(SIGNATURE)) throw new Error('not a PNG');
  const out: Array<{ type: string; data: Buffer; bytes: Buffer }> = [];
  for (let off = 8; off < png.length; ) {
    const len = png.readUInt32BE(off);
    const end = off + 12 + len;
    if (end > png.length) throw new Error('truncated PNG chunk');
    out.push({ type: png.toString('latin1', off + 4, off + 8), data: png.subarray(off + 8, off + 8 + len), bytes: png.subarray(off, end) });
    off = end;
  }
  return out;
}

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

let table: Uint32Array | undefined;

function crc32(buf: Buffer): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (const b of buf) c = table[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
