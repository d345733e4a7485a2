import { buildLabelScene } from './label-layout';
import { LabelPolicy, LabelRequest } from './label-request';
import { sceneToPdf } from './pdf';
import { svgToPng } from './raster';
import { sceneToSvg } from './svg';

/**
 * Labels and envelopes with a printed indicium, in the three formats a client prints from.
 * Each validates the request (LABEL_INVALID) and decodes the indicium (INDICIUM_MALFORMED)
 * before drawing: the human-readable block is taken from the signed bytes.
 */
export interface LabelRenderOptions {
  policy?: LabelPolicy;
}

/** SVG with the page size in inches and exactly 15-mil modules. */
export function renderLabelSvg(req: LabelRequest, opts: LabelRenderOptions = {}): string {
  return sceneToSvg(buildLabelScene(req, { policy: opts.policy }));
}

/** PNG at `dpi` (default 300), modules snapped to whole pixels (see datamatrix.ts). */
export async function renderLabelPng(req: LabelRequest, opts: LabelRenderOptions & { dpi?: number } = {}): Promise<Buffer> {
  const dpi = opts.dpi ?? 300;
  return svgToPng(sceneToSvg(buildLabelScene(req, { policy: opts.policy, pixelGrid: dpi })), dpi);
}

/** One-page PDF of the label's size with vector barcode and embedded font. */
export function renderLabelPdf(req: LabelRequest, opts: LabelRenderOptions & { creationDate?: Date } = {}): Promise<Buffer> {
  return sceneToPdf(buildLabelScene(req, { policy: opts.policy }), { creationDate: opts.creationDate, title: `Indicium ${req.size}` });
}
