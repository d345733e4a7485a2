import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEV_USER_PIN, readSecret } from './config';
import { vbiError } from '@vbi/core/errors';
import { LibraryHandle } from '../hsm/pkcs11-library';
import { TokenSigner } from '../hsm/token-signer';
import { HttpCaClient } from '../pki/ca-client';
import { DEV_VENDOR_LABEL } from '../pki/dev';
import { KeyRenewalStore, MeterGenStore } from '../pki/meter-store';
import { MeterGen } from '../pki/metergen';
import { fromPemAll } from '@vbi/core/pki/pem';
import { TrustStore } from '../pki/trust-store';
import { VendorRa } from '../pki/vendor-ra';

/**
 * MeterGen's configuration, from the environment. The CA is only a URL: in production CA_URL
 * names the postal CA, in development the dev CA (`node packages/server/dist/src/bin/postal-ca.js`).
 *
 *   CA_URL                          required, e.g. https://ca.example.gov/ (the protocol in ca-protocol.ts)
 *   VBI_TRUST_ANCHOR                root certificate(s) (PEM, oldest first, the last is current) installed out
 *                                   of band or by an accepted rollover (TrustStore.toPem); default certs/postal-root.pem
 *   VBI_RA_TOKEN_LABEL              vendor token with the RA key; default vbi-dev-vendor
 *   VBI_RA_KEY_ID                   id under which the CA registered the RA key; required
 *   VBI_RA_KEY_GENERATION           generation of the vendor-ra key; default 1
 *   VBI_RA_USER_PIN[_FILE]          user PIN of the vendor token (the dev token falls back to the dev PIN)
 *   VBI_INDICIUM_KEY_LIFETIME_DAYS  optional cap on indicium key life below the certificate's
 *   VBI_METERGEN_ORGANIZATION       optional O in requests (the vendor's name)
 *   VBI_CA_TIMEOUT_MS               default 15000
 */
export interface MeterGenConfig {
  caUrl: string;
  trustAnchorFile: string;
  ra: { tokenLabel: string; keyId: string; generation: number; userPin: string };
  keyLifetimeMs?: number;
  organization?: string;
  caTimeoutMs: number;
}

type Env = Record<string, string | undefined>;

/** CA_URL is set: MeterGen uses that CA (loadMeterGenConfig); unset, a tool uses the dev CA and vendor tokens. */
export function usesPostalCa(env: Env): boolean {
  return Boolean(env.CA_URL);
}

/** Reads and checks MeterGen's environment (CONFIG_INVALID names the bad variable). */
export function loadMeterGenConfig(env: Env = process.env, root = process.cwd()): MeterGenConfig {
  const bad = (msg: string) => vbiError('CONFIG_INVALID', msg);
  const caUrl = env.CA_URL;
  if (!caUrl) throw bad('CA_URL must name the postal CA (e.g. https://ca.example/ or the dev CA http://127.0.0.1:8444)');
  try {
    const u = new URL(caUrl);
    if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error('scheme');
  } catch {
    throw bad(`CA_URL '${caUrl}' is not an http(s) URL`);
  }
  const tokenLabel = env.VBI_RA_TOKEN_LABEL ?? DEV_VENDOR_LABEL;
  const keyId = env.VBI_RA_KEY_ID;
  if (!keyId) throw bad('VBI_RA_KEY_ID must name the RA key as the CA registered it');
  const userPin = readSecret(env, 'VBI_RA_USER_PIN') ?? (tokenLabel === DEV_VENDOR_LABEL ? DEV_USER_PIN : undefined);
  if (!userPin) throw bad(`VBI_RA_USER_PIN or VBI_RA_USER_PIN_FILE must hold the PIN of vendor token '${tokenLabel}'`);
  const int = (key: string, dflt: number | undefined, min: number, max: number): number | undefined => {
    const raw = env[key];
    if (raw === undefined || raw === '') return dflt;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) throw bad(`${key} must be an integer in [${min}, ${max}], got '${raw}'`);
    return n;
  };
  const days = int('VBI_INDICIUM_KEY_LIFETIME_DAYS', undefined, 1, 3650);
  return {
    caUrl,
    trustAnchorFile: env.VBI_TRUST_ANCHOR ?? join(root, 'certs', 'postal-root.pem'),
    ra: { tokenLabel, keyId, generation: int('VBI_RA_KEY_GENERATION', 1, 1, 1_000_000) as number, userPin },
    keyLifetimeMs: days === undefined ? undefined : days * 86_400_000,
    organization: env.VBI_METERGEN_ORGANIZATION,
    caTimeoutMs: int('VBI_CA_TIMEOUT_MS', 15_000, 100, 600_000) as number,
  };
}

/**
 * Composition root of MeterGen: the RA in its vendor token, the CA at its URL, the trust anchor
 * from its file, and the storage engine's MeterGen ports. `close()` releases the vendor token.
 */
export async function createMeterGen(deps: {
  config: MeterGenConfig; library: LibraryHandle; store: MeterGenStore & KeyRenewalStore; clock?: () => number;
}): Promise<{ metergen: MeterGen; trust: TrustStore; ra: VendorRa; ca: HttpCaClient; close(): void }> {
  const { config } = deps;
  let anchors: Buffer[];
  try {
    anchors = fromPemAll('CERTIFICATE', readFileSync(config.trustAnchorFile, 'utf8'));
    if (anchors.length === 0) throw new Error('no CERTIFICATE in the file');
  } catch (e) {
    throw vbiError('CONFIG_INVALID', `trust anchor ${config.trustAnchorFile}: ${(e as Error).message}`);
  }
  const trust = new TrustStore(anchors, deps.clock);
  const signer = await TokenSigner.open({ library: deps.library, tokenLabel: config.ra.tokenLabel, userPin: config.ra.userPin });
  const ca = new HttpCaClient(config.caUrl, config.caTimeoutMs);
  const ra = new VendorRa(signer, config.ra.keyId, { role: 'vendor-ra', generation: config.ra.generation });
  const metergen = new MeterGen({
    store: deps.store,
    ca,
    ra,
    trust,
    organization: config.organization,
    keyLifetimeMs: config.keyLifetimeMs,
    clock: deps.clock,
  });
  return { metergen, trust, ra, ca, close: () => signer.close() };
}
