import * as graphene from 'graphene-pk11';
import { vbiError } from '@vbi/core/errors';
import { LibraryHandle, findSlotByLabel } from './pkcs11-library';
import { KeyReport, proveOfficer, tokenKeyReport, weaknesses } from './key-ceremony';
import { login, withSession } from './token-session';
import { SigningRole, pairTemplates, parseSigningKeyLabel, signingKeyLabel } from './key-templates';
import { P256_PARAMS } from './mechanisms';
import { ecPublicKeySpki } from './public-keys';
import * as ops from './async-ops';

/**
 * Crypto-Officer operations for the signing roles (CA root, CA issuing, vendor RA): create one
 * generation of a role's key pair in its token, and report what a signing token holds. Like the
 * module ceremony, every key-creating step first proves the SO PIN.
 */

/** A token holding signing-role keys. */
export interface SigningTokenRef {
  library: LibraryHandle;
  /** Token label (the CA token, the vendor token). */
  label: string;
}

/**
 * Generates generation `generation` of `role`'s EC P-256 key pair with the role's template
 * (non-extractable, sign only, not destroyable) and returns its public key. Refuses a label
 * that already exists (KEY_EXISTS): generations are never replaced.
 */
export async function generateSigningKey(req: SigningTokenRef & {
  soPin: string; userPin: string; role: SigningRole; generation: number;
}): Promise<{ keyLabel: string; publicKeySpki: Buffer }> {
  const slot = findSlotByLabel(req.library, req.label);
  await proveOfficer(slot, req.soPin);
  const keyLabel = signingKeyLabel(req.role, req.generation);
  return withSession(slot, async (s) => {
    login(s, req.userPin, graphene.UserType.USER, 'user login');
    if (s.find({ label: keyLabel }).length > 0) {
      throw vbiError('KEY_EXISTS', `token '${req.label}' already holds ${keyLabel}`);
    }
    const { publicTemplate, privateTemplate } = pairTemplates(req.role);
    // CKA_ID ties the two halves together for PKCS#11 tools (p11tool, pkcs11-tool).
    const id = Buffer.from(keyLabel, 'utf8');
    const kp = await ops.generateKeyPair(s, 'EC_KEY_PAIR_GEN',
      { ...publicTemplate, label: keyLabel, id, keyType: graphene.KeyType.EC, paramsEC: P256_PARAMS },
      { ...privateTemplate, label: keyLabel, id, keyType: graphene.KeyType.EC });
    return { keyLabel, publicKeySpki: ecPublicKeySpki(kp.publicKey) };
  });
}

/**
 * The key report of a signing token (`ceremony status`), with each generation label attributed
 * to its role, so that its attributes are checked against the role's template.
 */
export async function signingKeyReport(req: SigningTokenRef & { userPin: string }): Promise<KeyReport[]> {
  const keys = await tokenKeyReport({ library: req.library, label: req.label, userPin: req.userPin, suite: 'aes' });
  return withSigningRoles(keys);
}

/** Attributes generation labels (`vbi.ca.root.2`) to their role and re-checks the template. */
export function withSigningRoles(keys: KeyReport[]): KeyReport[] {
  return keys.map((k) => {
    if (k.role) return k;
    const parsed = parseSigningKeyLabel(k.label);
    if (!parsed) return k;
    const attributed: KeyReport = { ...k, role: parsed.role };
    return { ...attributed, weaknesses: weaknesses(attributed, 'aes') };
  });
}
