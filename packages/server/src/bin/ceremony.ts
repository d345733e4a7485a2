import { runMain } from '@vbi/core/cli/run-main';
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { ceremonySettings } from '../config/ceremony-settings';
import { vbiError } from '@vbi/core/errors';
import { closeLibrary, openLibrary } from '../hsm/pkcs11-library';
import { isPackageSuite, PackageSuite } from '../hsm/mechanisms';
import { Env, StepContext, USAGE } from '../ceremony/step-context';
import { clone, generate, initToken, probe, status, takeOwnership } from '../ceremony/token-steps';
import { approvalRequest, approve, installOfficers, officerKey, reinstate } from '../ceremony/officer-steps';
import { caInitOrRollover, caRegisterRa, vendorRa } from '../ceremony/pki-steps';

/**
 * The key ceremony CLI, run by a Security Officer:  npm run ceremony -- <step> [options]
 *
 *   probe      [--label L] [--json]     is this token usable, and which profile fits (packages/server/hsm/README.md)
 *   init-token --label L [--force]      (profiles with provisioning free-slot)
 *   take-ownership --label L --officer NAME   vendor-initialised token: factory SO PIN changed, user PIN set
 *   generate   --label L --officer NAME [--suite aes|legacy-3des] [--own-keys]
 *   clone      --from L1 --to L2 --officer NAME
 *   status     --label L [--json]
 *   reinstate  --label L --officer NAME --accept-checkpoint HEX|none --approval FILE [--approval FILE ...]
 *
 * Officer approvals (docs/key-ceremony.md), each officer on a token of their own:
 *   officer-key      --label OFFICER_TOKEN --officer NAME [--out FILE]   the officer's approval key; writes its public key
 *   install-officers --label MODULE --officer NAME --threshold M --officer-key NAME=FILE ...   the module SO installs the approvers
 *   approval-request --label MODULE --accept-checkpoint HEX|none [--out FILE]   the statement to approve
 *   approve          --label OFFICER_TOKEN --officer NAME --request FILE [--out FILE]   one officer's approval
 *
 * PKI steps (docs/pki.md), on their own tokens (init-token them first):
 *   ca-init        --label CA --officer NAME [--ca-dir DIR]    dev/test postal CA: root + issuing keys and certificates
 *   ca-rollover    --label CA --officer NAME [--ca-dir DIR]    next root key generation becomes the root
 *   vendor-ra      --label VENDOR --officer NAME --ra-id ID [--out FILE]   vendor RA key; writes its public key
 *   ca-register-ra --ca-dir DIR --ra-id ID --public-key FILE --officer NAME   the CA accepts that RA's countersignatures
 *
 * PINs never go on the command line: VBI_SO_PIN / PKCS11_USER_PIN or their *_FILE variants
 * (take-ownership also VBI_FACTORY_SO_PIN[_FILE])
 * (for clone: VBI_SO_PIN_FROM, VBI_SO_PIN_TO, PKCS11_USER_PIN_FROM, PKCS11_USER_PIN_TO, each
 * also as *_FILE). The dev token labels (vbi-dev-module, vbi-dev-ca, vbi-dev-vendor) fall back to the dev PINs.
 * Every step that changes a token writes a JSON transcript (default var/ceremony/).
 *
 * This file parses the command line and dispatches; the steps are in ./token-steps.ts,
 * ./officer-steps.ts and ./pki-steps.ts, the usage text and helpers in ./step-context.ts.
 */
export async function runCeremony(argv: string[], env: Env = process.env, out: (s: string) => void = (s) => process.stdout.write(s + '\n')): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      label: { type: 'string' }, from: { type: 'string' }, to: { type: 'string' }, officer: { type: 'string' },
      suite: { type: 'string' }, force: { type: 'boolean' }, 'own-keys': { type: 'boolean' }, json: { type: 'boolean' },
      'transcript-dir': { type: 'string' }, 'accept-checkpoint': { type: 'string' }, help: { type: 'boolean' },
      'ca-dir': { type: 'string' }, 'ra-id': { type: 'string' }, out: { type: 'string' }, 'public-key': { type: 'string' },
      threshold: { type: 'string' }, 'officer-key': { type: 'string', multiple: true }, request: { type: 'string' },
      approval: { type: 'string', multiple: true },
    },
  });
  const step = positionals[0];
  if (!step || values.help) {
    out(USAGE);
    return step ? 0 : 2;
  }
  const { config, pins } = ceremonySettings(env);
  const suite: PackageSuite = (values.suite ?? config.hsm.suite) as PackageSuite;
  if (!isPackageSuite(suite)) throw vbiError('BAD_REQUEST', `--suite must be aes or legacy-3des`);
  const transcriptDir = values['transcript-dir'] ?? join(config.varDir, 'ceremony');
  const caDir = values['ca-dir'] ?? join(config.varDir, 'ca');
  const lib = openLibrary(config.hsm.library, config.hsm.softhsm2Conf, config.hsm.profile, config.hsm.initParameters, config.hsm.threads);
  try {
    const ctx: StepContext = { step, values, pins, out, config, suite, lib, transcriptDir, caDir };
    switch (step) {
      case 'probe': return await probe(ctx);
      case 'take-ownership': return await takeOwnership(ctx);
      case 'init-token': return await initToken(ctx);
      case 'generate': return await generate(ctx);
      case 'clone': return await clone(ctx);
      case 'status': return await status(ctx);
      case 'reinstate': return await reinstate(ctx);
      case 'officer-key': return await officerKey(ctx);
      case 'install-officers': return await installOfficers(ctx);
      case 'approval-request': return await approvalRequest(ctx);
      case 'approve': return await approve(ctx);
      case 'ca-init':
      case 'ca-rollover': return await caInitOrRollover(ctx);
      case 'vendor-ra': return await vendorRa(ctx);
      case 'ca-register-ra': return await caRegisterRa(ctx);
      default:
        out(USAGE);
        return 2;
    }
  } finally {
    await closeLibrary(lib);
  }
}

if (require.main === module) {
  runMain(() => runCeremony(process.argv.slice(2), process.env));
}
