import { promises as fs } from 'node:fs';
import { extname } from 'node:path';
import { vbiError } from '@vbi/core/errors';
import { renderLabelPdf, renderLabelPng, renderLabelSvg } from '@vbi/core/indicium/render/label';
import { checkLabelRequest, LabelRequest, LabelSize } from '@vbi/core/indicium/render/label-request';

/** The label formats the CLI writes, chosen by file extension. */
export const LABEL_FORMATS = ['pdf', 'png', 'svg'] as const;
/** pdf, png or svg. */
export type LabelFormat = (typeof LABEL_FORMATS)[number];

/** The format of `path` from its extension (.pdf, .png, .svg); BAD_REQUEST otherwise. */
export function labelFormatOf(path: string): LabelFormat {
  const ext = extname(path).slice(1).toLowerCase();
  if (!(LABEL_FORMATS as readonly string[]).includes(ext)) throw vbiError('BAD_REQUEST', `label file ${path} must end in .pdf, .png or .svg`, { field: 'out' });
  return ext as LabelFormat;
}

/** CLI size names: 4x6 (shipping label) and 10 (#10 envelope). */
export function labelSizeOf(flag: string): LabelSize {
  if (flag === '4x6' || flag === 'label-4x6') return 'label-4x6';
  if (flag === '10' || flag === 'envelope-10') return 'envelope-10';
  throw vbiError('BAD_REQUEST', `--size must be 4x6 or 10, not '${flag}'`, { field: 'size' });
}

/**
 * Checks addresses and size before anything is printed (LABEL_INVALID), so no postage is paid
 * for a label that cannot be drawn.
 */
export function checkLabelText(req: Omit<LabelRequest, 'indicium'>): void {
  checkLabelRequest({ ...req, indicium: Buffer.alloc(0) });
}

/** Renders a label: PDF (vector), PNG (300 dpi, pHYs set) or SVG. */
export async function renderLabel(format: LabelFormat, req: LabelRequest): Promise<Buffer> {
  if (format === 'pdf') return renderLabelPdf(req);
  if (format === 'png') return renderLabelPng(req, { dpi: 300 });
  return Buffer.from(renderLabelSvg(req), 'utf8');
}

/** Renders and writes a label; never replaces an existing file (a paid label). */
export async function writeLabelFile(path: string, req: LabelRequest): Promise<void> {
  const bytes = await renderLabel(labelFormatOf(path), req);
  await fs.writeFile(path, bytes, { flag: 'wx' });
}
