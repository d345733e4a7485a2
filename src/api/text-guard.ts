import type { RequestHandler } from 'express';
import { vbiError } from '../errors';

/**
 * Text in requests is for people and protocol fields: no control characters (C0, DEL, C1 — NUL
 * first of all: PostgreSQL refuses it in text, and a name or address never needs a line break)
 * and no lone UTF-16 surrogates (not Unicode; they do not survive UTF-8). Checked on every string
 * and object key of the JSON body and the query string, before validation and before anything
 * runs: such a request is 400 TEXT_INVALID and changes nothing.
 */
// eslint-disable-next-line no-control-regex
const BAD_TEXT = /[\u0000-\u001f\u007f-\u009f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

export function findBadText(value: unknown, path = ''): string | null {
  if (typeof value === 'string') return BAD_TEXT.test(value) ? path || '/' : null;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const p = findBadText(value[i], `${path}/${i}`);
      if (p) return p;
    }
    return null;
  }
  if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (BAD_TEXT.test(k)) return `${path}/${k.replace(BAD_TEXT, '?')}`;
      const p = findBadText(v, `${path}/${k}`);
      if (p) return p;
    }
  }
  return null;
}

export function textGuard(): RequestHandler {
  return (req, _res, next) => {
    const inBody = findBadText(req.body);
    if (inBody) throw vbiError('TEXT_INVALID', `body ${inBody}: control characters and lone surrogates are not allowed`, { in: 'body', path: inBody });
    const inQuery = findBadText(req.query);
    if (inQuery) throw vbiError('TEXT_INVALID', `query ${inQuery}: control characters and lone surrogates are not allowed`, { in: 'query', path: inQuery });
    next();
  };
}

/**
 * Request bodies are small JSON: a compressed body (Content-Encoding gzip, br, deflate, ...) is
 * refused with 415 before anything reads it, rather than inflated.
 */
export function refuseContentEncoding(): RequestHandler {
  return (req, _res, next) => {
    const enc = req.headers['content-encoding'];
    if (enc !== undefined && enc.trim().toLowerCase() !== 'identity') throw vbiError('CONTENT_ENCODING_UNSUPPORTED');
    next();
  };
}
