import express from 'express';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** Where `npm run build` writes the web app (scripts/build-web.ts). */
export const WEB_APP_DIR = join(__dirname, '..', '..', 'web');

/**
 * No inline script or style, nothing from another origin; label previews are blob: URLs of
 * images the page made itself.
 */
export const WEB_APP_CSP = [
  "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' blob: data:", "connect-src 'self'",
  "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'", "form-action 'self'",
].join('; ');

/**
 * Serves the built web app (docs/web-app.md) at `/`: static files only, each with the CSP.
 * Paths that are not files fall through to the API's 404, so /v1 behaves as before.
 */
export function webAppStatic(dir = WEB_APP_DIR): express.RequestHandler {
  if (!existsSync(join(dir, 'index.html'))) return (_req, _res, next) => next();
  return express.static(dir, {
    index: 'index.html',
    fallthrough: true,
    setHeaders: (res) => {
      res.setHeader('Content-Security-Policy', WEB_APP_CSP);
      res.setHeader('X-Content-Type-Options', 'nosniff');
      res.setHeader('Referrer-Policy', 'no-referrer');
      res.setHeader('Cache-Control', 'no-cache');
    },
  });
}
