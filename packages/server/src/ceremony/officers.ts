import { LibraryHandle } from '../hsm/pkcs11-library';
import { generateSigningKey } from '../hsm/signing-keys';
import { TokenSigner } from '../hsm/token-signer';
import { checkOfficerName } from '../hsm/officer-keys';
import { Approval, ReinstatementStatement, statementBytes } from '../ledger/officer-approval';

/**
 * The officer's side of approvals (docs/key-ceremony.md): each officer holds an approval key in
 * a token of their own (role `officer`, generation 1), gives its public key to the module's SO
 * (`install-officers`), and signs statements with it (`approve`).
 */
export const OFFICER_KEY = { role: 'officer', generation: 1 } as const;

/** Generates the officer's approval key in their token (SO PIN proved first); returns its public key (SPKI DER). */
export async function createOfficerKey(req: { library: LibraryHandle; label: string; soPin: string; userPin: string }): Promise<Buffer> {
  const r = await generateSigningKey({ ...req, role: OFFICER_KEY.role, generation: OFFICER_KEY.generation });
  return r.publicKeySpki;
}

/** The officer signs the statement with the approval key in their token (user PIN of that token). */
export async function signApproval(req: { library: LibraryHandle; label: string; userPin: string; officer: string; statement: ReinstatementStatement }): Promise<Approval> {
  const signer = await TokenSigner.open({ library: req.library, tokenLabel: req.label, userPin: req.userPin, poolSize: 1 });
  try {
    const signature = await signer.sign({ key: OFFICER_KEY, data: statementBytes(req.statement) });
    return { officer: checkOfficerName(req.officer), signature: signature.toString('base64') };
  } finally {
    signer.close();
  }
}
