import { join } from 'node:path';
import { vbiError } from '@vbi/core/errors';

type Env = Record<string, string | undefined>;

/**
 * The service process's own settings from the environment (packages/server/src/bin/main.ts), beside the shard's
 * configuration (loadConfig) and MeterGen's (metergen-config.ts):
 *
 *   HOST, PORT                   where the API listens; default 127.0.0.1:8080
 *   VBI_VAR_DIR                  the state directory; default <cwd>/var
 *   CA_URL                       set: production PKI (MeterGen at that CA); unset: the dev CA
 *   VBI_CA_PORT                  the dev CA's port; default 8444
 *   VBI_INTERMEDIATES            with CA_URL, the issuing CA certificate(s) (PEM file)
 *   VBI_TLS_CERT, VBI_TLS_KEY    both set: HTTPS with these PEM files
 *   VBI_METER_POOL               certified meters kept ready; default 3
 *   VBI_PUBLIC_URL               the service's public address
 *   VBI_TRUST_PROXY              Express's trust proxy setting
 *   VBI_AUTH_RATE_LIMIT          registration, challenge and session-open attempts per client per minute
 */
export interface ServerSettings {
  host: string;
  port: number;
  varDir: string;
  /** CA_URL is set: the production PKI, not the dev CA. */
  productionPki: boolean;
  /** The dev CA's port (VBI_CA_PORT). */
  devCaPort: number;
  /** VBI_INTERMEDIATES, checked where the production PKI is built. */
  intermediatesFile?: string;
  tls?: { certFile: string; keyFile: string };
  meterPoolMinimum: number;
  publicUrl?: string;
  trustProxy?: string;
  authRateLimit?: { limit: number; windowMs: number };
}

export function serverSettings(env: Env, root = process.cwd()): ServerSettings {
  return {
    host: env.HOST ?? '127.0.0.1',
    port: Number(env.PORT ?? 8080),
    varDir: env.VBI_VAR_DIR ?? join(root, 'var'),
    productionPki: Boolean(env.CA_URL),
    devCaPort: Number(env.VBI_CA_PORT ?? 8444),
    intermediatesFile: env.VBI_INTERMEDIATES,
    tls: env.VBI_TLS_CERT && env.VBI_TLS_KEY ? { certFile: env.VBI_TLS_CERT, keyFile: env.VBI_TLS_KEY } : undefined,
    meterPoolMinimum: Number(env.VBI_METER_POOL ?? 3),
    publicUrl: env.VBI_PUBLIC_URL || undefined,
    trustProxy: env.VBI_TRUST_PROXY || undefined,
    // registration, challenge and session-open attempts per client address (and meter) per minute
    authRateLimit: env.VBI_AUTH_RATE_LIMIT ? { limit: Number(env.VBI_AUTH_RATE_LIMIT), windowMs: 60_000 } : undefined,
  };
}

/** VBI_DB_LOG=1: the embedded PostgreSQL's output (initdb, postgres) on stderr instead of only kept for error messages. */
export function dbLogFrom(env: Env): boolean {
  return env.VBI_DB_LOG === '1';
}

/**
 * The postal licensing authority (docs/licensing.md), chosen by configuration before anything
 * starts, as the payment provider is: `cmls-http` (the HTTP adapter, its VBI_CMLS_* settings
 * checked by packages/server/src/config/cmls-settings.ts) or `dev`. A production deployment (CA_URL set)
 * must name it, and takes `dev` only when VBI_LICENSING_AUTHORITY=dev says so explicitly (a
 * staging system whose meters the post does not license).
 */
export function licensingChoice(env: Env): 'cmls-http' | 'dev' {
  const chosen = env.VBI_LICENSING_AUTHORITY || (env.CA_URL ? undefined : 'dev');
  if (chosen === undefined) {
    throw vbiError('CONFIG_INVALID', 'a production deployment (CA_URL set) needs VBI_LICENSING_AUTHORITY: cmls-http (the postal licensing service, with the VBI_CMLS_* settings of docs/licensing.md), or dev only for a staging system');
  }
  if (chosen === 'cmls-http') return chosen;
  if (chosen !== 'dev') throw vbiError('CONFIG_INVALID', `VBI_LICENSING_AUTHORITY '${chosen}' is not available (cmls-http or dev)`);
  return chosen;
}

/**
 * The front's settings (`npm start -- --workers N`, packages/server/src/ops/front.ts), beside the process's:
 *   VBI_TLS_CERT, VBI_TLS_KEY   refused: the front speaks plain HTTP
 *   DATABASE_URL                the database every worker is given; unset: the embedded one
 *   VBI_DIRECTORY_URL           the shard owner directory, if not the database's
 *   VBI_SHARD_TOKENS            `0=labelA,labelB;1=labelC`: each shard's tokens (shardTokens)
 */
export interface FrontSettings {
  /** VBI_TLS_CERT or VBI_TLS_KEY is set (the front refuses them). */
  tlsNamed: boolean;
  databaseUrl?: string;
  directoryUrl?: string;
  dbLog: boolean;
  /** VBI_SHARD_TOKENS, checked when called: shard → PKCS11_TOKEN_LABELS. */
  shardTokens(): Map<number, string>;
}

export function frontSettings(env: Env): FrontSettings {
  return {
    tlsNamed: Boolean(env.VBI_TLS_CERT || env.VBI_TLS_KEY),
    databaseUrl: env.DATABASE_URL || undefined,
    directoryUrl: env.VBI_DIRECTORY_URL || undefined,
    dbLog: dbLogFrom(env),
    shardTokens: () => shardTokens(env.VBI_SHARD_TOKENS),
  };
}

/** VBI_SHARD_TOKENS: `0=labelA,labelB;1=labelC` → shard → PKCS11_TOKEN_LABELS. */
export function shardTokens(spec: string | undefined): Map<number, string> {
  const out = new Map<number, string>();
  for (const part of (spec ?? '').split(';').map((x) => x.trim()).filter(Boolean)) {
    const m = /^(\d{1,3})=([^=;]+)$/.exec(part);
    if (!m) throw vbiError('CONFIG_INVALID', `VBI_SHARD_TOKENS: '${part}' is not SHARD=label[,label...]`);
    out.set(Number(m[1]), m[2].split(',').map((x) => x.trim()).filter(Boolean).join(','));
  }
  return out;
}
