import { matrixPath } from './barcode';
import { SVG_FONT_STACK } from './fonts';
import { Scene } from './scene';

/**
 * A scene as SVG: page size in inches, drawing units in points. Text is XML-escaped; the
 * barcode is one path with crisp edges.
 */
export function sceneToSvg(scene: Scene): string {
  const n = (v: number): string => String(+v.toFixed(3));
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${n(scene.width / 72)}in" height="${n(scene.height / 72)}in" viewBox="0 0 ${n(scene.width)} ${n(scene.height)}">`,
    `<rect width="${n(scene.width)}" height="${n(scene.height)}" fill="#fff"/>`,
  ];
  for (const it of scene.items) {
    switch (it.kind) {
      case 'text':
        parts.push(`<text x="${n(it.x)}" y="${n(it.y)}" font-family="${SVG_FONT_STACK}" font-size="${n(it.size)}" fill="#000" xml:space="preserve">${escapeXml(it.text)}</text>`);
        break;
      case 'matrix':
        parts.push(`<path fill="#000" shape-rendering="crispEdges" d="${matrixPath(it.matrix, it.x, it.y, it.module)}"/>`);
        break;
      case 'image':
        parts.push(`<image x="${n(it.x)}" y="${n(it.y)}" width="${n(it.width)}" height="${n(it.height)}" href="data:image/png;base64,${it.png.toString('base64')}"/>`);
        break;
      case 'line':
        parts.push(`<line x1="${n(it.x1)}" y1="${n(it.y1)}" x2="${n(it.x2)}" y2="${n(it.y2)}" stroke="#000" stroke-width="${n(it.width)}"/>`);
        break;
    }
  }
  parts.push('</svg>');
  return parts.join('\n');
}

/** Escapes text for SVG element content and attribute values. */
export function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);
}
