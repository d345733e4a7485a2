import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { vbiError } from '@vbi/core/errors';

/** The HTTP adapter's settings (packages/server/src/licensing/cmls-http-authority.ts takes them as they are). */
export interface CmlsHttpOptions {
  /** Base URL of the authority's licensing service (https); the /cmls/v1/... paths are appended. */
  url: string;
  /** The vendor's id at the authority: in every path and Idempotency-Key. */
  vendorId: string;
  /** The vendor's client certificate chain and key (PEM): mutual TLS. */
  clientCert: Buffer;
  clientKey: Buffer;
  /** The CA certificate(s) (PEM) the authority's server certificate must chain to; no other is trusted. */
  ca: Buffer;
  /** The whole exchange (connect, TLS, request, answer) gives up after this long: a LicensingLinkError. */
  timeoutMs: number;
}

/** What the vendor id may be: it goes into paths and header values unescaped by the authority. */
export const VENDOR_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Default and bounds of VBI_CMLS_TIMEOUT_MS: step 1c waits for the authority, so a few seconds. */
export const CMLS_TIMEOUT_DEFAULT_MS = 5_000;
const TIMEOUT_MIN_MS = 100;
const TIMEOUT_MAX_MS = 30_000;

/**
 * The HTTP adapter's settings from the environment (VBI_LICENSING_AUTHORITY=cmls-http;
 * docs/licensing.md): VBI_CMLS_URL, VBI_CMLS_VENDOR_ID, VBI_CMLS_CLIENT_CERT, VBI_CMLS_CLIENT_KEY,
 * VBI_CMLS_CA (PEM files) and VBI_CMLS_TIMEOUT_MS. Checked before anything starts: a missing or
 * unusable setting is CONFIG_INVALID naming the variable (never the content of a file).
 */
export function cmlsHttpOptionsFromEnv(env: NodeJS.ProcessEnv): CmlsHttpOptions {
  const url = required(env, 'VBI_CMLS_URL');
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw vbiError('CONFIG_INVALID', 'VBI_CMLS_URL is not a URL');
  }
  if (parsed.protocol !== 'https:') throw vbiError('CONFIG_INVALID', 'VBI_CMLS_URL must be an https URL (the authority is reached over mutual TLS)');
  if (parsed.username || parsed.password || parsed.search || parsed.hash) throw vbiError('CONFIG_INVALID', 'VBI_CMLS_URL must be a base URL without credentials, query or fragment');
  const vendorId = required(env, 'VBI_CMLS_VENDOR_ID');
  if (!VENDOR_ID_PATTERN.test(vendorId)) throw vbiError('CONFIG_INVALID', 'VBI_CMLS_VENDOR_ID must be 1 to 64 letters, digits, ".", "_" or "-"');
  const clientCert = file(env, 'VBI_CMLS_CLIENT_CERT');
  const clientKey = file(env, 'VBI_CMLS_CLIENT_KEY');
  const ca = file(env, 'VBI_CMLS_CA');
  pem('VBI_CMLS_CLIENT_CERT', () => new X509Certificate(clientCert));
  pem('VBI_CMLS_CLIENT_KEY', () => createPrivateKey(clientKey));
  pem('VBI_CMLS_CA', () => new X509Certificate(ca));
  try {
    createSecureContext({ cert: clientCert, key: clientKey, ca });
  } catch {
    throw vbiError('CONFIG_INVALID', 'VBI_CMLS_CLIENT_KEY is not the key of the certificate in VBI_CMLS_CLIENT_CERT');
  }
  let timeoutMs = CMLS_TIMEOUT_DEFAULT_MS;
  if (env.VBI_CMLS_TIMEOUT_MS !== undefined && env.VBI_CMLS_TIMEOUT_MS !== '') {
    timeoutMs = Number(env.VBI_CMLS_TIMEOUT_MS);
    if (!/^\d+$/.test(env.VBI_CMLS_TIMEOUT_MS) || timeoutMs < TIMEOUT_MIN_MS || timeoutMs > TIMEOUT_MAX_MS) {
      throw vbiError('CONFIG_INVALID', `VBI_CMLS_TIMEOUT_MS must be a whole number of milliseconds from ${TIMEOUT_MIN_MS} to ${TIMEOUT_MAX_MS}`);
    }
  }
  return { url, vendorId, clientCert, clientKey, ca, timeoutMs };
}

function required(env: NodeJS.ProcessEnv, name: string): string {
  const v = env[name];
  if (!v) throw vbiError('CONFIG_INVALID', `VBI_LICENSING_AUTHORITY=cmls-http needs ${name}`);
  return v;
}

function file(env: NodeJS.ProcessEnv, name: string): Buffer {
  const path = required(env, name);
  try {
    return readFileSync(path);
  } catch (e) {
    throw vbiError('CONFIG_INVALID', `${name}: cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/** Parses a PEM file's content; a failure names the variable only. */
function pem(name: string, parse: () => unknown): void {
  try {
    parse();
  } catch {
    throw vbiError('CONFIG_INVALID', `${name} does not hold a PEM ${name === 'VBI_CMLS_CLIENT_KEY' ? 'private key' : 'certificate'}`);
  }
}
