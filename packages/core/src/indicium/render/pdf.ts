import PDFDocument from 'pdfkit';
import { darkRuns } from './datamatrix';
import { labelFontFile } from './fonts';
import { Scene } from './scene';

/**
 * A scene as a one-page PDF of the scene's size (points are PDF's own unit, so a 15-mil
 * module is drawn as a 1.08 pt square). The label font is embedded (subset); the barcode is
 * vector rectangles, so it stays sharp at any printer resolution.
 */
export function sceneToPdf(scene: Scene, opts: { creationDate?: Date; title?: string } = {}): Promise<Buffer> {
  const doc = new PDFDocument({
    size: [scene.width, scene.height],
    margin: 0,
    autoFirstPage: true,
    info: { Title: opts.title ?? 'Indicium', Producer: 'vbi-postage-meter', Creator: 'vbi-postage-meter', CreationDate: opts.creationDate ?? new Date() },
  });
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    doc.on('data', (c: Buffer) => chunks.push(c));
    doc.on('end', () => resolve(Buffer.concat(chunks)));
    doc.on('error', reject);
  });
  doc.registerFont('label', labelFontFile());
  doc.font('label');
  for (const it of scene.items) {
    switch (it.kind) {
      case 'text':
        doc.fontSize(it.size).fillColor('black').text(it.text, it.x, it.y, { lineBreak: false, baseline: 'alphabetic' });
        break;
      case 'matrix':
        for (const r of darkRuns(it.matrix)) doc.rect(it.x + r.col * it.module, it.y + r.row * it.module, r.length * it.module, it.module);
        doc.fill('black');
        break;
      case 'image':
        doc.image(it.png, it.x, it.y, { width: it.width, height: it.height });
        break;
      case 'line':
        doc.moveTo(it.x1, it.y1).lineTo(it.x2, it.y2).lineWidth(it.width).stroke('black');
        break;
    }
  }
  doc.end();
  return done;
}
