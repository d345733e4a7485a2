import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { vbiError } from '@vbi/core/errors';
import { readIndiciumFromLabel } from '@vbi/core/indicium/decoder/label-reader';
import { renderLabelPdf, renderLabelPng, renderLabelSvg } from '@vbi/core/indicium/render/label';
import { LABEL_SIZES, LabelSize, MAX_LINE_CHARS } from '@vbi/core/indicium/render/label-request';
import { ApiRegistry } from './openapi';
import { base64Schema } from './schemas';
import { objectSchema } from './validation';
import { ERROR_SCHEMA_REF } from './openapi';

/** Largest label image the read route takes (base64 in JSON): a 300 dpi scan or a phone photo. */
export const LABEL_IMAGE_LIMIT = '8mb';
const MAX_IMAGE_BASE64 = 8 * 1024 * 1024;

const line = { type: 'string', minLength: 1, maxLength: MAX_LINE_CHARS };
const labelSchema = objectSchema({
  indicium: base64Schema(2048),
  size: { type: 'string', enum: Object.keys(LABEL_SIZES) },
  deliveryAddress: { type: 'array', minItems: 1, maxItems: 6, items: line },
  returnAddress: { type: 'array', minItems: 0, maxItems: 5, items: line },
  format: { type: 'string', enum: ['png', 'pdf', 'svg'] },
}, ['indicium', 'size', 'deliveryAddress', 'format']);
const readSchema = objectSchema({ image: base64Schema(MAX_IMAGE_BASE64), type: { type: 'string', enum: ['png', 'jpeg', 'pdf'] } });

const CONTENT_TYPES = { png: 'image/png', pdf: 'application/pdf', svg: 'image/svg+xml' } as const;
const MAGIC: Record<'png' | 'jpeg' | 'pdf', Buffer> = {
  png: Buffer.from([0x89, 0x50, 0x4e, 0x47]), jpeg: Buffer.from([0xff, 0xd8, 0xff]), pdf: Buffer.from('%PDF-', 'latin1'),
};

/**
 * Label routes for the web app (docs/web-app.md), stateless and public like /v1/verify: an
 * indicium is printed in the open, so neither route handles a secret.
 *  - POST /v1/labels: the label of an indicium drawn by the same renderer as the CLI's.
 *  - POST /v1/labels/read: the indicium read from a label image or PDF (dmtxread, pdftoppm).
 */
export function defineLabelRoutes(api: ApiRegistry): void {
  api.defineRoute<{ indicium: string; size: LabelSize; deliveryAddress: string[]; returnAddress?: string[]; format: 'png' | 'pdf' | 'svg' }>({
    method: 'post', path: '/v1/labels', summary: 'draw the label of an indicium (PNG at 300 dpi, PDF or SVG), as the CLI prints it',
    body: labelSchema,
    responses: {
      200: { description: 'the label', contentType: 'application/octet-stream', schema: { type: 'string', format: 'binary' } },
      400: { description: 'invalid label or indicium', schema: ERROR_SCHEMA_REF },
    },
    handler: async (req, res) => {
      const b = req.body;
      const request = { indicium: Buffer.from(b.indicium, 'base64'), size: b.size, deliveryAddress: b.deliveryAddress, returnAddress: b.returnAddress };
      const out = b.format === 'png' ? await renderLabelPng(request, { dpi: 300 }) : b.format === 'pdf' ? await renderLabelPdf(request) : Buffer.from(renderLabelSvg(request), 'utf8');
      res.status(200).type(CONTENT_TYPES[b.format]).send(out);
      return res;
    },
  });
  api.defineRoute<{ image: string; type: 'png' | 'jpeg' | 'pdf' }>({
    method: 'post', path: '/v1/labels/read', summary: 'read the indicium from a label image (PNG, JPEG) or PDF; verify it with POST /v1/verify',
    body: readSchema,
    responses: { 200: { description: 'the indicium, base64', schema: { type: 'object' } }, 400: { description: 'no symbol or not an image', schema: ERROR_SCHEMA_REF } },
    handler: async (req) => {
      const image = Buffer.from(req.body.image, 'base64');
      if (!image.subarray(0, MAGIC[req.body.type].length).equals(MAGIC[req.body.type])) {
        throw vbiError('BAD_REQUEST', `the file is not a ${req.body.type.toUpperCase()}`, { field: 'image' });
      }
      const dir = await fs.mkdtemp(join(tmpdir(), 'vbi-label-'));
      try {
        const file = join(dir, `label.${req.body.type === 'jpeg' ? 'jpg' : req.body.type}`);
        await fs.writeFile(file, image, { mode: 0o600 });
        const indicium = await readIndiciumFromLabel(file);
        return { indicium: indicium.toString('base64') };
      } finally {
        await fs.rm(dir, { recursive: true, force: true });
      }
    },
  });
}
