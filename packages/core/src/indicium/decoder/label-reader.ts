import { existsSync } from 'node:fs';
import { vbiError } from '../../errors';
import { decodeIndicium } from '../layout';
import { readDataMatrix } from './dmtxread';
import { withPdfPagePng } from './pdf-page';

/**
 * The indicium on a label image or PDF (dmtxread; PDFs through pdftoppm at 300 dpi): the first
 * symbol that decodes as an indicium (a label may carry other symbols, e.g. in its ad art), else
 * the first symbol, which then verifies as MALFORMED.
 */
export async function readIndiciumFromLabel(file: string): Promise<Buffer> {
  if (!existsSync(file)) throw vbiError('BAD_REQUEST', `no such file: ${file}`);
  const scan = async (png: string): Promise<Buffer> => {
    let first: Buffer | undefined;
    for await (const symbol of readDataMatrix(png)) {
      first ??= symbol;
      try {
        decodeIndicium(symbol);
        return symbol;
      } catch {
        // not an indicium: keep looking
      }
    }
    if (first) return first;
    throw vbiError('BARCODE_NOT_FOUND', `no DataMatrix symbol found in ${file}`);
  };
  return /\.pdf$/i.test(file) ? withPdfPagePng(file, 300, scan) : scan(file);
}
