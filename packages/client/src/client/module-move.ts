import { createPublicKey, randomBytes } from 'node:crypto';
import { vbiError } from '@vbi/core/errors';
import { checkChallengeAnswer } from './challenge-answer';
import { ClientState, KnownModule } from './client-state';
import { HttpClient } from './http';
import { KeyFile } from './key-file';
import { verifyModuleProof } from './module-trust';
import type { ModuleChallengeAnswer, WireModule } from './wire';

/**
 * Moves the client to another module of the service: the first one `GET /v1/modules` lists
 * whose serial is not the key file's, made to prove itself exactly as in registration step 1b
 * (`POST /v1/registrations/{meterId}/challenge` with a fresh 32-byte nonce; its identity
 * certificate chains to the key file's root and its identity key signed our nonce and its
 * transport key). Then the key file names it (`moduleSerial`) and holds its proven transport
 * key, OAEP hash and chain in `modules`, in place of any entry for that serial; the other
 * entries stay (receipts signed by the old module are still checked with its identity key).
 *
 * Returns the new serial, or undefined when no other module is listed (nothing changed). A
 * module that does not prove itself is CERT_INVALID and the key file is not changed; the
 * service's refusal of the challenge, or a network failure, is thrown as it is (nothing changed
 * either).
 */
export async function moveToAnotherModule(req: { http: HttpClient; keyFile: KeyFile<ClientState>; at: Date }): Promise<string | undefined> {
  const s = req.keyFile.state;
  const listed = await req.http.get<{ modules?: WireModule[] }>('/v1/modules');
  const modules = Array.isArray(listed?.modules) ? listed.modules : [];
  const chosen = modules.find((m) => typeof m?.serial === 'string' && m.serial !== s.moduleSerial);
  if (!chosen) return undefined;
  const proven = await proveModule({ http: req.http, state: s, serial: chosen.serial, at: req.at });
  const state = req.keyFile.state;
  await req.keyFile.save({ ...state, moduleSerial: proven.serial, modules: [...state.modules.filter((m) => m.serial !== proven.serial), proven] });
  return proven.serial;
}

/** Registration step 1b for a meter that exists: the module's signed answer, checked; CERT_INVALID otherwise. */
async function proveModule(req: { http: HttpClient; state: ClientState; serial: string; at: Date }): Promise<KnownModule> {
  const { meterId, rootCertPem } = req.state;
  const clientNonce = randomBytes(32).toString('base64');
  const proof = await req.http.post<ModuleChallengeAnswer>(`/v1/registrations/${encodeURIComponent(meterId)}/challenge`, { moduleSerial: req.serial, clientNonce });
  checkChallengeAnswer(proof, req.serial);
  verifyModuleProof({
    rootCertPem, meterId, moduleSerial: req.serial, clientNonce,
    transportKey: proof.transportKey, certificateChain: proof.certificateChain, signature: proof.signature, at: req.at,
  });
  if (!isRsaKey(proof.transportKey)) throw vbiError('CERT_INVALID', `module ${req.serial}: the signed transport key is not an RSA public key`);
  return { serial: req.serial, transportKey: proof.transportKey, oaepHash: proof.oaepHash, certificateChain: proof.certificateChain };
}

function isRsaKey(spkiBase64: string): boolean {
  try {
    return createPublicKey({ key: Buffer.from(spkiBase64, 'base64'), format: 'der', type: 'spki' }).asymmetricKeyType === 'rsa';
  } catch {
    return false;
  }
}
