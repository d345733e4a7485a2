import { renderAsync } from '@resvg/resvg-js';
import { LABEL_FONT_FAMILY, labelFontFile } from './fonts';
import { setPngDpi } from './png';

/**
 * Rasterises an SVG whose user unit is the point (as sceneToSvg writes) at `dpi` with resvg,
 * off the event loop, using only the bundled label font (no system fonts: the same pixels on
 * every machine), and stamps the dpi into the PNG.
 */
export async function svgToPng(svg: string, dpi: number): Promise<Buffer> {
  const image = await renderAsync(svg, {
    dpi: 72, // 1 in = 72 user units, so the zoom below is exactly dpi / 72 pixels per point
    fitTo: { mode: 'zoom', value: dpi / 72 },
    background: '#ffffff',
    font: { fontFiles: [labelFontFile()], loadSystemFonts: false, defaultFontFamily: LABEL_FONT_FAMILY, monospaceFamily: LABEL_FONT_FAMILY },
  });
  return setPngDpi(image.asPng(), dpi);
}
