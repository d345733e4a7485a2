import { decodeIndicium } from '../layout';
import { dataMatrixModules, modulePixels, ModuleMatrix, QUIET_ZONE_MODULES, X_DIMENSION_IN } from './datamatrix';
import { CHAR_ADVANCE_EM } from './fonts';
import { indiciumText } from './human-readable';
import { checkLabelRequest, LABEL_SIZES, LabelPolicy, LabelRequest } from './label-request';
import { pngSize } from './png';
import { Scene, SceneItem } from './scene';

/**
 * Places the parts of a label (return address, delivery address, postage block with the
 * DataMatrix, optional art and display text) on a page of a standard size.
 *
 * `pixelGrid` (dpi) is for raster output: the module size becomes a whole number of pixels
 * (modulePixels) and the symbol's corner lands on a pixel edge, so no module is blurred.
 * Vector output (SVG, PDF) leaves it unset and gets exactly 15-mil modules (1.08 pt).
 */
export function buildLabelScene(req: LabelRequest, opts: { policy?: LabelPolicy; pixelGrid?: number } = {}): Scene {
  checkLabelRequest(req, opts.policy);
  const { fields } = decodeIndicium(req.indicium);
  const grid = opts.pixelGrid;
  const module = grid ? (modulePixels(grid) * 72) / grid : X_DIMENSION_IN * 72;
  const snap = (v: number): number => (grid ? (Math.round((v * grid) / 72) * 72) / grid : v);
  const matrix = dataMatrixModules(req.indicium);
  const text = indiciumText(fields, req.currencySymbol);
  const page = LABEL_SIZES[req.size];
  const items: SceneItem[] = [];

  const size = blockSize(matrix, module, text);

  /** The postage block: barcode (with its quiet zone) and the text to its right. */
  const block = (x: number, y: number): void => {
    const q = QUIET_ZONE_MODULES * module;
    items.push({ kind: 'matrix', x: snap(x + q), y: snap(y + q), module, matrix });
    const tx = x + matrix.cols * module + 2 * q + TEXT_GAP;
    let ty = y + 8;
    items.push({ kind: 'text', x: tx, y: ty, size: 8, text: text.heading });
    ty += 15;
    items.push({ kind: 'text', x: tx, y: ty, size: 14, text: text.amount });
    for (const line of text.details) {
      ty += 8.5;
      items.push({ kind: 'text', x: tx, y: ty, size: 7, text: line });
    }
  };
  const paragraph = (lines: string[], x: number, baseline: number, size: number, leading: number): number => {
    lines.forEach((l, i) => items.push({ kind: 'text', x, y: baseline + i * leading, size, text: l }));
    return baseline + (lines.length - 1) * leading;
  };

  if (req.size === 'envelope-10') {
    const m = 18;
    const bx = page.width - m - size.width;
    block(bx, m);
    if (req.returnAddress) paragraph(req.returnAddress, m, m + 9, 9, 11);
    if (req.art) items.push(fitImage(req.art.png, bx - 12 - 108, m, 108, 54));
    if (req.displayText) items.push({ kind: 'text', x: bx, y: m + size.height + 9, size: 7, text: req.displayText });
    paragraph(req.deliveryAddress, 252, 148, 11, 13.5);
  } else {
    const m = 14;
    block(m, m);
    const rule = m + size.height + 6;
    items.push({ kind: 'line', x1: m, y1: rule, x2: page.width - m, y2: rule, width: 1 });
    let y = rule + 14;
    if (req.returnAddress?.length) y = paragraph(req.returnAddress, m, y, 8, 10) + 24;
    items.push({ kind: 'text', x: m, y, size: 8, text: 'SHIP TO:' });
    paragraph(req.deliveryAddress, m + 18, y + 20, 12, 15);
    const bottom = page.height - m;
    if (req.displayText) items.push({ kind: 'text', x: m, y: bottom - 2, size: 8, text: req.displayText });
    if (req.art) items.push(fitImage(req.art.png, m, bottom - 12 - 72, page.width - 2 * m, 72));
  }
  return { width: page.width, height: page.height, items };
}

/** Points between the barcode's quiet zone and the postage text. */
const TEXT_GAP = 4;

/** Width of monospaced text. */
function width(s: string, size: number): number {
  return s.length * size * CHAR_ADVANCE_EM;
}

function blockSize(matrix: ModuleMatrix, module: number, text: ReturnType<typeof indiciumText>): { width: number; height: number } {
  const q = QUIET_ZONE_MODULES * module;
  const textWidth = Math.max(width(text.heading, 8), width(text.amount, 14), ...text.details.map((l) => width(l, 7)));
  const textHeight = 8 + 15 + 8.5 * text.details.length + 2;
  return { width: matrix.cols * module + 2 * q + TEXT_GAP + textWidth, height: Math.max(matrix.rows * module + 2 * q, textHeight) };
}

/** The image scaled to fit the box, keeping its aspect ratio, centred. */
function fitImage(png: Buffer, x: number, y: number, boxW: number, boxH: number): SceneItem {
  const px = pngSize(png)!;
  const scale = Math.min(boxW / px.width, boxH / px.height);
  const w = px.width * scale;
  const h = px.height * scale;
  return { kind: 'image', x: x + (boxW - w) / 2, y: y + (boxH - h) / 2, width: w, height: h, png };
}
