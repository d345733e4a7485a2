import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readDataMatrix } from '@vbi/core/indicium/decoder/dmtxread';
import { withPdfPagePng } from '@vbi/core/indicium/decoder/pdf-page';

/**
 * The first `max` DataMatrix symbols dmtxread (libdmtx) finds in a PNG held in memory. Keep
 * `max` at the number of symbols expected: proving that there is no further symbol makes
 * dmtxread scan the whole page, which takes tens of seconds at 600 dpi.
 */
export async function decodePng(png: Buffer, max = 1): Promise<Buffer[]> {
  const dir = mkdtempSync(join(tmpdir(), 'vbi-decode-'));
  try {
    const path = join(dir, 'image.png');
    writeFileSync(path, png);
    return await decodeFile(path, max);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Page 1 of a PDF rendered by pdftoppm at `dpi`, then decoded by dmtxread (first `max` symbols). */
export async function decodePdf(pdf: Buffer, dpi = 300, max = 1): Promise<Buffer[]> {
  const dir = mkdtempSync(join(tmpdir(), 'vbi-decode-'));
  try {
    const path = join(dir, 'label.pdf');
    writeFileSync(path, pdf);
    return await withPdfPagePng(path, dpi, (png) => decodeFile(png, max));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function decodeFile(path: string, max: number): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const symbol of readDataMatrix(path, { maxSymbols: max })) out.push(Buffer.from(symbol));
  return out;
}
