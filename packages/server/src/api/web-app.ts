import express from 'express';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** Where `npm run build` writes the web app (scripts/build-web.ts). */
export const WEB_APP_DIR = join(__dirname, '..', '..', 'web');

/**
 * No inline script or style, nothing from another origin; label previews are blob: URLs of
 * images the page made itself. With Stripe as the payment processor (`stripe`), Stripe.js and its
 * card fields are let in, as Stripe documents for them: its script from js.stripe.com, its frames
 * from js.stripe.com and hooks.stripe.com (3-D Secure), its requests to api.stripe.com.
 */
export function webAppCsp(opts: { stripe?: boolean } = {}): string {
  const stripe = (s: string) => (opts.stripe ? ` ${s}` : '');
  return [
    "default-src 'self'", `script-src 'self'${stripe('https://js.stripe.com')}`, "style-src 'self'", "img-src 'self' blob: data:",
    `connect-src 'self'${stripe('https://api.stripe.com')}`, ...(opts.stripe ? ['frame-src https://js.stripe.com https://hooks.stripe.com'] : []),
    "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'", "form-action 'self'",
  ].join('; ');
}

export const WEB_APP_CSP = webAppCsp();

/**
 * Serves the built web app (docs/web-app.md) at `/`: static files only, each with the CSP.
 * Paths that are not files fall through to the API's 404, so /v1 behaves as before.
 */
export function webAppStatic(dir = WEB_APP_DIR, csp = WEB_APP_CSP): express.RequestHandler {
  if (!existsSync(join(dir, 'index.html'))) return (_req, _res, next) => next();
  return express.static(dir, {
    index: 'index.html',
    fallthrough: true,
    setHeaders: (res) => {
      res.setHeader('Content-Security-Policy', csp);
      res.setHeader('X-Content-Type-Options', 'nosniff');
      res.setHeader('Referrer-Policy', 'no-referrer');
      res.setHeader('Cache-Control', 'no-cache');
    },
  });
}
