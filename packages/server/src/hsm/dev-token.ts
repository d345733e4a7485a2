import { LibraryHandle, findSlotByLabel } from './pkcs11-library';
import { generateModuleKeys, initToken } from './key-ceremony';
import { PackageSuite } from './mechanisms';
import { vbiError } from '@vbi/core/errors';

/**
 * Development convenience: when the configured token does not exist on a library whose profile
 * provisions tokens on a free slot (SoftHSM2's), run the init-token and generate ceremony steps
 * with the dev PINs. Refuses any other library: a production HSM is provisioned by officers with
 * `npm run ceremony`.
 */
export async function ensureDevToken(req: {
  library: LibraryHandle; label: string; soPin: string; userPin: string; suite: PackageSuite;
}): Promise<{ created: boolean }> {
  try {
    findSlotByLabel(req.library, req.label);
    return { created: false };
  } catch (e) {
    if ((e as { code?: string }).code !== 'TOKEN_NOT_FOUND') throw e;
  }
  if (req.library.profile.provisioning !== 'free-slot') {
    throw vbiError('TOKEN_NOT_FOUND', `token '${req.label}' not found; provision production tokens with 'npm run ceremony'`);
  }
  await initToken({ library: req.library, label: req.label, soPin: req.soPin, userPin: req.userPin });
  await generateModuleKeys({ library: req.library, label: req.label, soPin: req.soPin, userPin: req.userPin, suite: req.suite });
  return { created: true };
}
