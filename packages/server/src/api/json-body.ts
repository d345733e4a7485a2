import express, { type RequestHandler } from 'express';
import { vbiError } from '@vbi/core/errors';

/** Default request body limit: postage requests are small; mailing lists go in pages. */
export const DEFAULT_BODY_LIMIT = '64kb';

/**
 * The JSON body parser every API router mounts: strict (top level must be an object or array),
 * `application/json` only, bounded. Its errors become BAD_JSON / BODY_TOO_LARGE /
 * UNSUPPORTED_MEDIA_TYPE in errorHandler().
 */
export function jsonBody(opts: { limit?: string | number } = {}): RequestHandler {
  return express.json({ limit: opts.limit ?? DEFAULT_BODY_LIMIT, strict: true, type: 'application/json' });
}

/**
 * For routes that take a body: a body sent with another content type (form data, text) is
 * 415 UNSUPPORTED_MEDIA_TYPE instead of being silently ignored. A request without a body
 * passes, and the body schema then reports the missing body.
 */
export function requireJsonContent(): RequestHandler {
  return (req, _res, next) => {
    if (hasBody(req.headers) && req.headers['content-type'] !== undefined && !req.is('application/json')) {
      next(vbiError('UNSUPPORTED_MEDIA_TYPE', `request body must be application/json, not ${req.headers['content-type']}`));
      return;
    }
    next();
  };
}

/** As type-is: a request has a body when it is chunked or declares a length (even 0). */
function hasBody(h: { 'transfer-encoding'?: string; 'content-length'?: string }): boolean {
  return h['transfer-encoding'] !== undefined || (h['content-length'] !== undefined && !Number.isNaN(Number(h['content-length'])));
}
