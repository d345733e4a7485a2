import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assembleIndicium, encodeIndiciumData } from '@vbi/core/indicium/layout';
import { barcodePng, barcodeSvg } from '@vbi/core/indicium/render/barcode';
import { dataMatrixModules, modulePixels } from '@vbi/core/indicium/render/datamatrix';
import { formatMailingDate, formatMills } from '@vbi/core/indicium/render/human-readable';
import { renderLabelPdf, renderLabelPng, renderLabelSvg } from '@vbi/core/indicium/render/label';
import { buildLabelScene } from '@vbi/core/indicium/render/label-layout';
import { LabelRequest, LabelSize, LABEL_SIZES } from '@vbi/core/indicium/render/label-request';
import { encodeGrayPng, pngDpi, pngSize } from '@vbi/core/indicium/render/png';
import { svgToPng } from '@vbi/core/indicium/render/raster';
import { decodePdf, decodePng } from '../helpers/decode';
import { sampleFields } from '../helpers/indicium-fixtures';

/** A sample indicium with a made-up signature (rendering does not verify). */
function sampleIndicium(): Buffer {
  return assembleIndicium(encodeIndiciumData(sampleFields({ certSerial: 'f1e2d3c4b5a69788f1e2d3c4b5a69788' })), randomBytes(64));
}

/** A 120 x 60 gray gradient: art that is not a barcode. */
const ART = encodeGrayPng({ width: 120, height: 60, pixels: Uint8Array.from({ length: 7200 }, (_, i) => (i % 120) * 2), dpi: 150 });
const APPROVED = new Map([['logo-1', createHash('sha256').update(ART).digest('hex')]]);

function request(size: LabelSize, over: Partial<LabelRequest> = {}): LabelRequest {
  return {
    indicium: sampleIndicium(),
    size,
    deliveryAddress: ['JANE Q PUBLIC', 'ACME & SONS <SHIPPING>', '123 MAIN ST APT 4', 'NEW YORK NY 10001-1234'],
    returnAddress: ['JOHN SMITH', '1 ELM ST', 'WASHINGTON DC 20260'],
    displayText: 'THANK YOU FOR YOUR BUSINESS',
    art: { id: 'logo-1', png: ART },
    ...over,
  };
}

describe('indicium rendering', function () {
  this.timeout(60_000);

  const modules: Array<[number, number]> = [[72, 1], [203, 3], [300, 5], [600, 9], [1200, 18]];
  for (const [dpi, px] of modules) {
    it(`a 15-mil module is ${px} px at ${dpi} dpi`, () => expect(modulePixels(dpi)).to.equal(px));
  }

  for (const dpi of [203, 300, 600]) {
    it(`barcode PNG at ${dpi} dpi: dmtxread returns exactly the signed bytes; size and pHYs match`, async () => {
      const bytes = sampleIndicium();
      const png = barcodePng(bytes, { dpi });
      const m = dataMatrixModules(bytes);
      expect(pngSize(png)).to.deep.equal({ width: (m.cols + 4) * modulePixels(dpi), height: (m.rows + 4) * modulePixels(dpi) });
      expect(pngDpi(png)).to.equal(dpi);
      const decoded = await decodePng(png, 2); // small image: also proves there is no second symbol
      expect(decoded.map((b) => b.toString('hex'))).to.deep.equal([bytes.toString('hex')]);
    });
  }

  const payloads: Array<[string, Buffer]> = [
    ['every byte value 0..255', Buffer.from(Array.from({ length: 256 }, (_, i) => i))],
    ['NULs, CR/LF and carets (no escape processing)', Buffer.from('\x00\x00^FNC1^029\r\n\x00\xff\\', 'latin1')],
    ['an RSA-sized indicium (322 bytes)', assembleIndicium(encodeIndiciumData(sampleFields({ algorithm: 'rsa-2048' })), randomBytes(256))],
    ['a single byte', Buffer.from([0x80])],
  ];
  for (const [name, bytes] of payloads) {
    it(`is binary safe: ${name}`, async () => {
      const [decoded] = await decodePng(barcodePng(bytes, { dpi: 300 }));
      expect(decoded?.toString('hex')).to.equal(bytes.toString('hex'));
    });
  }

  it('barcode SVG is drawn in 0.381 mm modules and decodes once rasterised', async () => {
    const bytes = sampleIndicium();
    const svg = barcodeSvg(bytes);
    const m = dataMatrixModules(bytes);
    const mm = +((m.cols + 4) * 0.381).toFixed(4);
    expect(svg).to.contain(`width="${mm}mm"`).and.to.contain(`viewBox="0 0 ${m.cols + 4} ${m.rows + 4}"`);
    // 1 mm = 72 / 25.4 user units once the size is in points: wrap it so svgToPng's point convention holds.
    const inPoints = svg.replace(/width="[^"]+mm" height="[^"]+mm"/, `width="${(mm * 72) / 25.4}" height="${(mm * 72) / 25.4}"`);
    const [decoded] = await decodePng(await svgToPng(inPoints, 600));
    expect(decoded?.toString('hex')).to.equal(bytes.toString('hex'));
  });

  for (const size of Object.keys(LABEL_SIZES) as LabelSize[]) {
    const { width, height } = LABEL_SIZES[size];

    for (const dpi of [203, 300, 600]) {
      it(`${size} PNG at ${dpi} dpi: page size, pHYs, and the barcode decodes to the indicium`, async () => {
        const req = request(size);
        const png = await renderLabelPng(req, { dpi, policy: { approvedArt: APPROVED } });
        expect(pngSize(png)).to.deep.equal({ width: Math.round((width / 72) * dpi), height: Math.round((height / 72) * dpi) });
        expect(pngDpi(png)).to.equal(dpi);
        expect((await decodePng(png)).map((b) => b.toString('hex'))).to.deep.equal([req.indicium.toString('hex')]);
      });
    }

    it(`${size} PDF: page size, searchable text, and pdftoppm + dmtxread give back the indicium`, async () => {
      const req = request(size);
      const pdf = await renderLabelPdf(req, { policy: { approvedArt: APPROVED }, creationDate: new Date(Date.UTC(2026, 0, 15)) });
      const dir = mkdtempSync(join(tmpdir(), 'vbi-pdf-test-'));
      try {
        writeFileSync(join(dir, 'l.pdf'), pdf);
        const info = execFileSync('pdfinfo', [join(dir, 'l.pdf')]).toString();
        expect(info).to.match(new RegExp(`Page size:\\s+${width} x ${height} pts`));
        expect(info).to.match(/Pages:\s+1\n/);
        const text = execFileSync('pdftotext', ['-layout', join(dir, 'l.pdf'), '-']).toString();
        for (const s of ['POSTAGE', '$0.68', 'FCL JAN 15 2026', 'FROM ZIP 20260', 'METER M-000042', 'ACME & SONS <SHIPPING>', 'WASHINGTON DC 20260', 'THANK YOU']) {
          expect(text).to.contain(s);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      expect((await decodePdf(pdf, 300)).map((b) => b.toString('hex'))).to.deep.equal([req.indicium.toString('hex')]);
    });

    it(`${size} SVG: escaped text, art, and the barcode decodes once rasterised`, async () => {
      const req = request(size);
      const svg = renderLabelSvg(req, { policy: { approvedArt: APPROVED } });
      expect(svg).to.contain(`width="${width / 72}in"`).and.to.contain(`height="${height / 72}in"`);
      expect(svg).to.contain('ACME &amp; SONS &lt;SHIPPING&gt;').and.not.to.contain('<SHIPPING>');
      expect(svg).to.contain('$0.68').and.to.contain('<image ');
      const [decoded] = await decodePng(await svgToPng(svg, 300));
      expect(decoded?.toString('hex')).to.equal(req.indicium.toString('hex'));
    });
  }

  for (const size of Object.keys(LABEL_SIZES) as LabelSize[]) {
    it(`${size}: the largest content (RSA indicium, 32-character meter ID, full addresses) stays on the page without overlaps`, () => {
      const fields = sampleFields({ algorithm: 'rsa-2048', meterId: 'Z'.repeat(32), certSerial: 'ab'.repeat(20), postage: 4_294_967_295, sequence: 4_294_967_295 });
      const scene = buildLabelScene(
        request(size, {
          indicium: assembleIndicium(encodeIndiciumData(fields), randomBytes(256)),
          deliveryAddress: Array(6).fill('W'.repeat(40)),
          returnAddress: Array(5).fill('W'.repeat(40)),
          displayText: 'W'.repeat(40),
        }),
        { policy: { approvedArt: APPROVED } },
      );
      // Boxes in points; text: advance 0.5 em, ascent 0.8 em, descent 0.2 em.
      const boxes = scene.items.map((it) => {
        switch (it.kind) {
          case 'text': return { x0: it.x, y0: it.y - 0.8 * it.size, x1: it.x + it.text.length * it.size * 0.5, y1: it.y + 0.2 * it.size, what: it.text };
          case 'matrix': return { x0: it.x, y0: it.y, x1: it.x + it.matrix.cols * it.module, y1: it.y + it.matrix.rows * it.module, what: 'barcode' };
          case 'image': return { x0: it.x, y0: it.y, x1: it.x + it.width, y1: it.y + it.height, what: 'art' };
          case 'line': return { x0: it.x1, y0: it.y1 - it.width / 2, x1: it.x2, y1: it.y2 + it.width / 2, what: 'rule' };
        }
      });
      for (const b of boxes) {
        expect(b.x0, b.what).to.be.at.least(9);
        expect(b.y0, b.what).to.be.at.least(9);
        expect(b.x1, b.what).to.be.at.most(scene.width - 9);
        expect(b.y1, b.what).to.be.at.most(scene.height - 9);
      }
      for (let i = 0; i < boxes.length; i++) {
        for (let j = i + 1; j < boxes.length; j++) {
          const [a, b] = [boxes[i], boxes[j]];
          const overlap = a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;
          expect(overlap, `${a.what} / ${b.what}`).to.equal(false);
        }
      }
    });
  }

  const refusals: Array<[string, Partial<LabelRequest>, { approvedArt?: ReadonlyMap<string, string> }, string]> = [
    ['art that is not approved', {}, {}, 'LABEL_INVALID'],
    ['art whose bytes differ from the approved digest', { art: { id: 'logo-1', png: Buffer.concat([ART, Buffer.from([0])]) } }, { approvedArt: APPROVED }, 'LABEL_INVALID'],
    ['art that is not a PNG', { art: { id: 'x', png: Buffer.from('GIF89a') } }, { approvedArt: new Map([['x', createHash('sha256').update('GIF89a').digest('hex')]]) }, 'LABEL_INVALID'],
    ['no delivery address', { deliveryAddress: [] }, { approvedArt: APPROVED }, 'LABEL_INVALID'],
    ['a 41-character address line', { deliveryAddress: ['X'.repeat(41)] }, { approvedArt: APPROVED }, 'LABEL_INVALID'],
    ['7 address lines', { deliveryAddress: Array(7).fill('LINE') }, { approvedArt: APPROVED }, 'LABEL_INVALID'],
    ['a control character', { returnAddress: ['A\tB'] }, { approvedArt: APPROVED }, 'LABEL_INVALID'],
    ['an unknown size', { size: 'a4' as LabelSize }, { approvedArt: APPROVED }, 'LABEL_INVALID'],
    ['a malformed indicium', { indicium: Buffer.from('hello') }, { approvedArt: APPROVED }, 'INDICIUM_MALFORMED'],
  ];
  for (const [name, over, policy, code] of refusals) {
    it(`refuses ${name} (${code})`, () => {
      expect(() => renderLabelSvg(request('envelope-10', over), { policy })).to.throw().with.property('code', code);
    });
  }

  const money: Array<[number, string]> = [[680, '$0.68'], [685, '$0.685'], [0, '$0.00'], [1_234_500, '$1,234.50'], [5, '$0.005']];
  for (const [mills, text] of money) {
    it(`prints ${mills} mills as ${text}`, () => expect(formatMills(mills)).to.equal(text));
  }

  it('prints the date of mailing as on meter stamps', () => expect(formatMailingDate('2026-01-05')).to.equal('JAN 05 2026'));
});
