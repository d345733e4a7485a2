import type { RequestHandler } from 'express';
import { vbiError } from '@vbi/core/errors';

/**
 * Text in requests is for people and protocol fields: no control characters (C0, DEL, C1 — NUL
 * first of all: PostgreSQL refuses it in text, and a name or address never needs a line break)
 * and no lone UTF-16 surrogates (not Unicode; they do not survive UTF-8). Checked on every string
 * and object key of the JSON body and the query string, before validation and before anything
 * runs: such a request is 400 TEXT_INVALID and changes nothing.
 */
// eslint-disable-next-line no-control-regex
const BAD_TEXT = /[\u0000-\u001f\u007f-\u009f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** JSON nested deeper than this is refused: no message of the protocol comes close. */
export const MAX_JSON_DEPTH = 32;

/**
 * The JSON Pointer of the first string (or key) holding bad text, or null. Iterative, so a
 * hostile nesting depth cannot exhaust the stack; deeper than MAX_JSON_DEPTH is refused.
 */
export function findBadText(value: unknown): string | null {
  const stack: Array<{ v: unknown; path: string; depth: number }> = [{ v: value, path: '', depth: 0 }];
  while (stack.length > 0) {
    const { v, path, depth } = stack.pop() as { v: unknown; path: string; depth: number };
    if (typeof v === 'string') {
      if (BAD_TEXT.test(v)) return path || '/';
      continue;
    }
    if (!v || typeof v !== 'object') continue;
    if (depth >= MAX_JSON_DEPTH) throw vbiError('BAD_JSON', `request nests deeper than ${MAX_JSON_DEPTH} levels`);
    const entries: Array<[string, unknown]> = Array.isArray(v) ? v.map((x, i) => [String(i), x]) : Object.entries(v);
    for (let i = entries.length - 1; i >= 0; i--) {
      const [k, x] = entries[i];
      if (!Array.isArray(v) && BAD_TEXT.test(k)) return `${path}/${k.replace(BAD_TEXT, '?')}`;
      stack.push({ v: x, path: `${path}/${k}`, depth: depth + 1 });
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
