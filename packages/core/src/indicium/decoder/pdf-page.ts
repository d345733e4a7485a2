import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { vbiError } from '../../errors';

/**
 * Renders page 1 of a PDF to a PNG with pdftoppm (Debian package poppler-utils), as a printer
 * would, and hands its path to `use`; the temporary files are removed afterwards.
 */
export async function withPdfPagePng<T>(pdfPath: string, dpi: number, use: (pngPath: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'vbi-pdf-'));
  try {
    const base = join(dir, 'page');
    await new Promise<void>((resolve, reject) => {
      execFile('pdftoppm', ['-r', String(dpi), '-png', '-singlefile', '-f', '1', '-l', '1', pdfPath, base], { timeout: 60_000 }, (err, _out, stderr) => {
        if ((err as NodeJS.ErrnoException | null)?.code === 'ENOENT') return reject(vbiError('DECODER_UNAVAILABLE', 'pdftoppm not found: apt-get install poppler-utils'));
        if (err) return reject(new Error(`pdftoppm failed: ${String(stderr).trim() || err.message}`));
        resolve();
      });
    });
    return await use(`${base}.png`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
