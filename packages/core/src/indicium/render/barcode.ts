import { dataMatrixModules, darkRuns, modulePixels, ModuleMatrix, QUIET_ZONE_MODULES, X_DIMENSION_MM } from './datamatrix';
import { encodeGrayPng } from './png';

/** Options of the stand-alone barcode images. */
export interface BarcodeOptions {
  /** Raster resolution of the PNG; default 600 (9 px modules, exactly 15 mil). */
  dpi?: number;
  /** Light margin in modules; default QUIET_ZONE_MODULES. */
  quietZone?: number;
}

/**
 * The indicium's DataMatrix as a grayscale PNG at `dpi` (stored in pHYs), with whole-pixel
 * modules of round(dpi x 15 mil) and a white quiet zone. Decoding it yields exactly `bytes`.
 * (bwip-js's own PNG output draws 2 x scale pixels per module, so it cannot make the 9 px
 * module of 600 dpi or the 3 px one of 203 dpi; hence this small rasteriser.)
 */
export function barcodePng(bytes: Buffer, opts: BarcodeOptions = {}): Buffer {
  const dpi = opts.dpi ?? 600;
  return matrixPng(dataMatrixModules(bytes), modulePixels(dpi), opts.quietZone ?? QUIET_ZONE_MODULES, dpi);
}

/** Rasterises a module grid: `px` pixels per module, `quiet` modules of margin. */
export function matrixPng(m: ModuleMatrix, px: number, quiet: number, dpi: number): Buffer {
  const width = (m.cols + 2 * quiet) * px;
  const height = (m.rows + 2 * quiet) * px;
  const pixels = new Uint8Array(width * height).fill(255);
  for (let r = 0; r < m.rows; r++) {
    for (let c = 0; c < m.cols; c++) {
      if (!m.dark[r * m.cols + c]) continue;
      for (let y = 0; y < px; y++) {
        const row = ((r + quiet) * px + y) * width;
        pixels.fill(0, row + (c + quiet) * px, row + (c + quiet + 1) * px);
      }
    }
  }
  return encodeGrayPng({ width, height, pixels, dpi });
}

/**
 * The DataMatrix as a stand-alone SVG whose width and height are in millimetres (15-mil
 * modules), drawn in module units: print it at 100 % and the X dimension is 0.381 mm.
 */
export function barcodeSvg(bytes: Buffer, opts: { quietZone?: number } = {}): string {
  const m = dataMatrixModules(bytes);
  const q = opts.quietZone ?? QUIET_ZONE_MODULES;
  const w = m.cols + 2 * q;
  const h = m.rows + 2 * q;
  const mm = (n: number): string => `${+(n * X_DIMENSION_MM).toFixed(4)}mm`;
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${mm(w)}" height="${mm(h)}" viewBox="0 0 ${w} ${h}" shape-rendering="crispEdges">` +
    `<rect width="${w}" height="${h}" fill="#fff"/>` +
    `<path fill="#000" d="${matrixPath(m, q, q, 1)}"/></svg>`
  );
}

/** SVG path data drawing the dark runs of `m` with its top-left at (x, y), `module` units per module. */
export function matrixPath(m: ModuleMatrix, x: number, y: number, module: number): string {
  const n = (v: number): string => String(+v.toFixed(4));
  return darkRuns(m)
    .map((r) => `M${n(x + r.col * module)} ${n(y + r.row * module)}h${n(r.length * module)}v${n(module)}h${n(-r.length * module)}z`)
    .join('');
}
