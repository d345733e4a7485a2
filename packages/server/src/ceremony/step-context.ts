import type { Config } from '../config/config';
import type { CeremonyPins } from '../config/ceremony-settings';
import { vbiError } from '@vbi/core/errors';
import { KeyReport, moduleSerial } from '../hsm/key-ceremony';
import type { LibraryHandle } from '../hsm/pkcs11-library';
import type { PackageSuite } from '../hsm/mechanisms';

/** What every ceremony step gets from the CLI (./cli.ts): its options, the PINs (packages/server/src/config/ceremony-settings.ts), the open library. */

/** Printed by --help, without a step, and with every missing option. */
export const USAGE = `usage: npm run ceremony -- <probe|init-token|take-ownership|generate|clone|status|reinstate|officer-key|install-officers|approval-request|approve|ca-init|ca-rollover|vendor-ra|ca-register-ra> [options]
  probe      [--label L] [--json]
  init-token --label L [--force]
  take-ownership --label L --officer NAME
  generate   --label L --officer NAME [--suite aes|legacy-3des] [--own-keys]
  clone      --from L1 --to L2 --officer NAME
  status     --label L [--json]
  reinstate  --label L --officer NAME --accept-checkpoint HEX|none --approval FILE [--approval FILE ...]
  officer-key      --label OFFICER_TOKEN --officer NAME [--out FILE]
  install-officers --label MODULE --officer NAME --threshold M --officer-key NAME=FILE [--officer-key NAME=FILE ...]
  approval-request --label MODULE --accept-checkpoint HEX|none [--out FILE]
  approve          --label OFFICER_TOKEN --officer NAME --request FILE [--out FILE]
  ca-init        --label CA --officer NAME [--ca-dir DIR]
  ca-rollover    --label CA --officer NAME [--ca-dir DIR]
  vendor-ra      --label VENDOR --officer NAME --ra-id ID [--out FILE]
  ca-register-ra --ca-dir DIR --ra-id ID --public-key FILE --officer NAME
options: --transcript-dir DIR (default var/ceremony), --ca-dir DIR (default var/ca)
PINs from the environment: VBI_SO_PIN[_FILE], PKCS11_USER_PIN[_FILE] (clone: *_FROM / *_TO; take-ownership: VBI_FACTORY_SO_PIN[_FILE])
token profile: PKCS11_PROFILE (a name in packages/server/hsm/profiles or a JSON file; default: the profile matching PKCS11_LIBRARY)`;

export type Env = Record<string, string | undefined>;

/** The command line's options (./cli.ts parses them). */
export interface StepOptions {
  label?: string; from?: string; to?: string; officer?: string; suite?: string; force?: boolean; 'own-keys'?: boolean; json?: boolean;
  'transcript-dir'?: string; 'accept-checkpoint'?: string; help?: boolean; 'ca-dir'?: string; 'ra-id'?: string; out?: string; 'public-key'?: string;
  threshold?: string; 'officer-key'?: string[]; request?: string; approval?: string[];
}

export interface StepContext {
  /** The step's name (the first positional). */
  step: string;
  values: StepOptions;
  /** The PINs the environment gives (packages/server/src/config/ceremony-settings.ts). */
  pins: CeremonyPins;
  out: (s: string) => void;
  config: Config;
  suite: PackageSuite;
  lib: LibraryHandle;
  transcriptDir: string;
  caDir: string;
}

export function acceptedCheckpoint(arg: string): Buffer | null {
  if (arg === 'none') return null;
  if (!/^([0-9a-f]{2})+$/i.test(arg)) throw vbiError('BAD_REQUEST', '--accept-checkpoint takes the hex of the module row\'s checkpoint, or none');
  return Buffer.from(arg, 'hex');
}

export function required(v: string | undefined, name: string): string {
  if (!v) throw vbiError('BAD_REQUEST', `--${name} is required\n${USAGE}`);
  return v;
}

/** The module serial the service will use for this token (token serial or identity key, per profile). */
export function serialOf(lib: LibraryHandle, label: string): string {
  return moduleSerial(lib, label) ?? '(none yet)';
}

export function formatKeys(label: string, serial: string, keys: KeyReport[]): string {
  const lines = [`token '${label}' serial ${serial}`];
  for (const k of keys) {
    const check = k.kcv ? `KCV ${k.kcv}` : k.spkiSha256 ? `SPKI-SHA256 ${k.spkiSha256}` : '';
    const weak = k.weaknesses.length ? `  WEAK: ${k.weaknesses.join('; ')}` : '';
    lines.push(`  ${k.label.padEnd(24)} ${k.class.padEnd(7)} ${k.keyType.padEnd(6)} ${check}${weak}`);
  }
  return lines.join('\n');
}

