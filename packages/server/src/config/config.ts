import { defaultTokenThreads } from '../hsm/token-threads';
import { MAX_SHARD } from './shard';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { vbiError } from '@vbi/core/errors';
import { MAX_CK_ULONG, isPackageSuite } from '../hsm/mechanisms';
import { loadProfile } from '../hsm/token-profile';
import { HsmConfig } from '../hsm/hsm-config';
import { defaultWalArchive, type WalArchiveSettings } from '../db/wal-archive';
import { DEFAULT_SUSPENSION_POLICY, type SuspensionPolicy } from '../indicium/fraud-report';
import { dbLogFrom } from './server-settings';

/**
 * Everything that differs between SoftHSM2 in development and a production HSM lives here,
 * read from the environment. The code paths are the same for both.
 */
export interface Config {
  hsm: HsmConfig;
  /** The shard this process serves (VBI_SHARD, default 0; packages/server/src/config/shard.ts). */
  shard: number;
  /**
   * VBI_STANDBY=1: while another process serves the shard (or holds one of its tokens), wait and
   * take the shard over once it is gone, instead of stopping with MODULE_IN_USE.
   */
  standby?: boolean;
  /** PostgreSQL URL; unset: an embedded PostgreSQL in <varDir>/pgdata. */
  databaseUrl?: string;
  /**
   * Where the shard owner directory is (VBI_DIRECTORY_URL, a postgres:// URL): one database every
   * process of the deployment shares; unset, the shard's own database (packages/server/src/ledger/shard-owners.ts).
   */
  directoryUrl?: string;
  /** Standbys of DATABASE_URL's server (DATABASE_STANDBY_URLS, comma-separated): connections go to whichever is primary (docs/operations.md). */
  databaseStandbyUrls: string[];
  /** Spoilage limit for partial refunds, basis points of the ascending register (100 = 1%). */
  spoilageLimitBps: number;
  /** Project-local state directory (dev tokens, embedded database, transcripts). */
  varDir: string;
  /** Continuous WAL archiving of the embedded cluster (a DATABASE_URL server archives by its own settings). */
  walArchive: WalArchiveSettings;
  /** Where the operations tools (backup, restore, journal) write their transcripts (VBI_TRANSCRIPT_DIR; default <varDir>/transcripts). */
  transcriptDir: string;
  /** Where `npm run backup` writes base backups (VBI_BACKUP_DIR; default <varDir>/backups). */
  backupDir: string;
  /** Where `npm run journal -- export` writes the journal export (VBI_JOURNAL_EXPORT_DIR; default <varDir>/journal-export). */
  journalExportDir: string;
  /** Where the daily reports are written (VBI_REPORT_DIR; default <varDir>/reports). */
  reportDir: string;
  /** How long a mailer's HMK and password live from registration or re-key (VBI_USER_SECRETS_LIFETIME_DAYS, default 730). */
  userSecretsLifetimeMs: number;
  /** When duplicate sightings suspend a meter (VBI_SUSPEND_DUPLICATES, VBI_SUSPEND_PLANTS, VBI_SUSPEND_WINDOW_HOURS). */
  suspension: SuspensionPolicy;
  /**
   * The service renews indicium keys expiring within `renewBeforeMs` (VBI_KEY_RENEW_BEFORE_DAYS,
   * default 30), looking every `intervalMs` (VBI_KEY_RENEWAL_INTERVAL_MINUTES, default 60).
   */
  keyRenewal: { renewBeforeMs: number; intervalMs: number };
  /** VBI_DB_LOG=1: the embedded PostgreSQL's output on stderr (packages/server/src/db/embedded-postgres.ts). */
  dbLog?: boolean;
  /** Where PostgreSQL's client tools are (VBI_PG_BINDIR; default /usr/lib/postgresql/<major>/bin, packages/server/src/db/pg-tools.ts). */
  pgBinDir?: string;
}

type Env = Record<string, string | undefined>;

/** Reads `KEY=VALUE` lines written by scripts/bootstrap.sh (dev defaults only). */
function readDevEnv(varDir: string): Env {
  const file = join(varDir, 'dev.env');
  if (!existsSync(file)) return {};
  const out: Env = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) out[m[1]] = m[2];
  }
  return out;
}

function intFrom(env: Env, key: string, dflt: number, min: number, max: number): number {
  const raw = env[key];
  if (raw === undefined || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw vbiError('CONFIG_INVALID', `${key} must be an integer in [${min}, ${max}], got '${raw}'`);
  }
  return n;
}

/** A PIN comes from `<KEY>` or from the file named by `<KEY>_FILE` (trailing newline trimmed). */
export function readSecret(env: Env, key: string): string | undefined {
  const file = env[`${key}_FILE`];
  if (file) return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  return env[key];
}

export const DEV_TOKEN_LABEL = 'vbi-dev-module';

/** The dev module token of shard `n` (provisioned by the service on SoftHSM2): shard 0's is DEV_TOKEN_LABEL. */
export function devTokenLabel(shard: number): string {
  return shard === 0 ? DEV_TOKEN_LABEL : `${DEV_TOKEN_LABEL}-${shard}`;
}
export const DEV_USER_PIN = '1234-dev-user';
export const DEV_SO_PIN = '1234-dev-officer';

export function loadConfig(env: Env = process.env, root = process.cwd()): Config {
  const varDir = env.VBI_VAR_DIR ?? join(root, 'var');
  const dev = readDevEnv(varDir);
  const library = env.PKCS11_LIBRARY ?? dev.PKCS11_LIBRARY;
  if (!library) {
    throw vbiError('CONFIG_INVALID', 'PKCS11_LIBRARY is not set (run scripts/bootstrap.sh for a dev SoftHSM2)');
  }
  const softhsm2Conf = env.SOFTHSM2_CONF ?? (library.includes('softhsm') ? dev.SOFTHSM2_CONF : undefined);
  const shard = intFrom(env, 'VBI_SHARD', 0, 0, MAX_SHARD);
  const labels = (env.PKCS11_TOKEN_LABELS ?? devTokenLabel(shard)).split(',').map((s) => s.trim()).filter(Boolean);
  const isDevToken = labels.length === 1 && labels[0] === devTokenLabel(shard);
  const userPin = readSecret(env, 'PKCS11_USER_PIN') ?? (isDevToken ? DEV_USER_PIN : undefined);
  if (!userPin) throw vbiError('CONFIG_INVALID', 'PKCS11_USER_PIN or PKCS11_USER_PIN_FILE is required');
  const userType = intFrom(env, 'PKCS11_USER_TYPE', 1, 0, MAX_CK_ULONG);
  const suite = env.VBI_PACKAGE_SUITE ?? 'aes';
  if (!isPackageSuite(suite)) throw vbiError('CONFIG_INVALID', `VBI_PACKAGE_SUITE must be 'aes' or 'legacy-3des', got '${suite}'`);
  const profile = loadProfile(env.PKCS11_PROFILE || undefined, library);
  if (!profile.suites.includes(suite)) {
    throw vbiError('CONFIG_INVALID', `VBI_PACKAGE_SUITE '${suite}' is not available on token profile '${profile.name}' (${profile.suites.join(', ')})`);
  }
  const oaepHash = env.PKCS11_OAEP_HASH || profile.oaepHash;
  if (oaepHash !== 'sha1' && oaepHash !== 'sha256') throw vbiError('CONFIG_INVALID', 'PKCS11_OAEP_HASH must be sha1 or sha256');
  return {
    varDir,
    shard,
    standby: ['1', 'true'].includes(env.VBI_STANDBY ?? ''),
    databaseUrl: env.DATABASE_URL || undefined,
    directoryUrl: directoryUrl(env),
    databaseStandbyUrls: standbyUrls(env),
    walArchive: {
      dir: env.VBI_WAL_ARCHIVE_DIR || defaultWalArchive(varDir).dir,
      timeoutSeconds: intFrom(env, 'VBI_ARCHIVE_TIMEOUT', defaultWalArchive(varDir).timeoutSeconds, 1, 3600),
    },
    transcriptDir: env.VBI_TRANSCRIPT_DIR || join(varDir, 'transcripts'),
    backupDir: env.VBI_BACKUP_DIR || join(varDir, 'backups'),
    journalExportDir: env.VBI_JOURNAL_EXPORT_DIR || (shard === 0 ? join(varDir, 'journal-export') : join(varDir, 'journal-export', `shard-${shard}`)),
    // each shard signs and writes its own daily reports
    reportDir: env.VBI_REPORT_DIR || (shard === 0 ? join(varDir, 'reports') : join(varDir, 'reports', `shard-${shard}`)),
    userSecretsLifetimeMs: intFrom(env, 'VBI_USER_SECRETS_LIFETIME_DAYS', 730, 1, 3650) * 86_400_000,
    keyRenewal: {
      renewBeforeMs: intFrom(env, 'VBI_KEY_RENEW_BEFORE_DAYS', 30, 1, 365) * 86_400_000,
      intervalMs: intFrom(env, 'VBI_KEY_RENEWAL_INTERVAL_MINUTES', 60, 1, 1440) * 60_000,
    },
    suspension: {
      duplicates: intFrom(env, 'VBI_SUSPEND_DUPLICATES', DEFAULT_SUSPENSION_POLICY.duplicates, 1, 1000),
      plants: intFrom(env, 'VBI_SUSPEND_PLANTS', DEFAULT_SUSPENSION_POLICY.plants, 1, 100),
      windowHours: intFrom(env, 'VBI_SUSPEND_WINDOW_HOURS', DEFAULT_SUSPENSION_POLICY.windowHours, 1, 24 * 366),
    },
    spoilageLimitBps: intFrom(env, 'VBI_SPOILAGE_LIMIT_BPS', 100, 0, 10_000),
    dbLog: dbLogFrom(env),
    pgBinDir: env.VBI_PG_BINDIR || undefined,
    hsm: {
      library,
      softhsm2Conf,
      profile,
      initParameters: env.PKCS11_INIT_PARAMETERS || undefined,
      modules: labels.map((tokenLabel) => ({ tokenLabel, userPin, userType })),
      suite,
      ringSize: intFrom(env, 'VBI_RING_SIZE', 3, 3, 5),
      wrapMechanism: intFrom(env, 'PKCS11_WRAP_MECHANISM', profile.wrapMechanism, 0, MAX_CK_ULONG),
      oaepHash,
      // at least 2: a command's key scope holds one session while it signs with the identity key
      sessionPoolSize: intFrom(env, 'PKCS11_SESSION_POOL', 4, 2, 64),
      threads: intFrom(env, 'PKCS11_THREADS', defaultTokenThreads(), 1, 64),
    },
  };
}

/** VBI_DIRECTORY_URL: the shard owner directory's database, if not the shard's own. */
function directoryUrl(env: Env): string | undefined {
  const u = env.VBI_DIRECTORY_URL || undefined;
  if (u !== undefined && !/^postgres(ql)?:\/\//.test(u)) throw vbiError('CONFIG_INVALID', 'VBI_DIRECTORY_URL is not a postgres:// URL');
  return u;
}

/** DATABASE_STANDBY_URLS: comma-separated postgres:// URLs, only beside a DATABASE_URL. */
function standbyUrls(env: Env): string[] {
  const list = (env.DATABASE_STANDBY_URLS ?? '').split(',').map((u) => u.trim()).filter(Boolean);
  if (list.length > 0 && !env.DATABASE_URL) throw vbiError('CONFIG_INVALID', 'DATABASE_STANDBY_URLS needs DATABASE_URL (the embedded database has no standby)');
  for (const u of list) {
    if (!/^postgres(ql)?:\/\//.test(u)) throw vbiError('CONFIG_INVALID', 'DATABASE_STANDBY_URLS holds a value that is not a postgres:// URL');
  }
  return list;
}
