import bwipjs from 'bwip-js';

/**
 * DataMatrix ECC 200 symbols for indicia, encoded by bwip-js (BWIPP). Only the module grid is
 * taken from bwip-js; the PNG, SVG and PDF renderers draw it at an exact physical size.
 *
 * Size: the X dimension (module size) is 15 mil = 0.015 in = 0.381 mm = 1.08 pt, the IBI
 * value that office laser and ink-jet printers print reliably. A raster image can only hold
 * whole pixels per module, so at `dpi` a module is round(dpi x 0.015) pixels (ties round up):
 *   600 dpi -> 9 px = 15.0 mil;  300 dpi -> 5 px = 16.7 mil;  203 dpi -> 3 px = 14.8 mil;
 *   1200 dpi -> 18 px = 15.0 mil. The PNG carries its dpi (pHYs) so it prints at that size.
 */
export const X_DIMENSION_IN = 0.015;
export const X_DIMENSION_MM = 0.381;
/** Light margin around the symbol, in modules (ISO/IEC 16022 asks for at least 1). */
export const QUIET_ZONE_MODULES = 2;

/** The symbol's module grid: `dark[r * cols + c]` is 1 for a dark module, row 0 at the top. */
export interface ModuleMatrix {
  rows: number;
  cols: number;
  dark: Uint8Array;
}

/**
 * The ECC 200 symbol carrying exactly `bytes`. The bytes go in as an 8-bit string with
 * bwip-js `binarytext` (no UTF-8 re-encoding) and without `parse` (so '^' is not an escape):
 * BWIPP then chooses ASCII / Base 256 encodation itself and a decoder returns the same bytes.
 */
export function dataMatrixModules(bytes: Buffer): ModuleMatrix {
  if (bytes.length === 0) throw new Error('nothing to encode');
  const [sym] = bwipjs.raw({ bcid: 'datamatrix', text: bytes.toString('latin1'), binarytext: true }) as Array<{
    pixs: number[];
    pixx: number;
    pixy: number;
  }>;
  if (!sym || sym.pixs.length !== sym.pixx * sym.pixy) throw new Error('bwip-js returned no DataMatrix');
  return { rows: sym.pixy, cols: sym.pixx, dark: Uint8Array.from(sym.pixs) };
}

/** Whole pixels per module at `dpi` (see the table above); at least 1. */
export function modulePixels(dpi: number): number {
  if (!Number.isFinite(dpi) || dpi < 50 || dpi > 4800) throw new Error(`dpi ${dpi} out of range 50..4800`);
  return Math.max(1, Math.round((dpi * 15) / 1000)); // dpi x 15 mil, computed exactly
}

/** Horizontal runs of dark modules, row by row: fewer shapes for SVG and PDF. */
export function darkRuns(m: ModuleMatrix): Array<{ row: number; col: number; length: number }> {
  const runs: Array<{ row: number; col: number; length: number }> = [];
  for (let r = 0; r < m.rows; r++) {
    for (let c = 0; c < m.cols; ) {
      if (!m.dark[r * m.cols + c]) {
        c++;
        continue;
      }
      const start = c;
      while (c < m.cols && m.dark[r * m.cols + c]) c++;
      runs.push({ row: r, col: start, length: c - start });
    }
  }
  return runs;
}
