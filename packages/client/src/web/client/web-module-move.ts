import { vbiError } from '@vbi/core/errors';
import type { ClientState, KnownModule, OaepHash } from '../../client/client-state';
import type { HttpClient } from '../../client/http';
import type { ModuleChallengeAnswer, WireModule } from '../../client/wire';
import { checkChallengeAnswer } from '../../client/challenge-answer';
import { bytes, randomBytes } from '../crypto/web-crypto';
import { checkModuleCertificateWeb, verifyModuleProofWeb } from '../crypto/web-module-trust';


/**
 * The SDK's moveToAnotherModule (packages/client/src/client/module-move.ts, docs/protocol.md 8) in the browser,
 * on WebCrypto: the first module `GET /v1/modules` lists whose serial is not the key file's is
 * made to prove itself exactly as in registration step 1b (`POST
 * /v1/registrations/{meterId}/challenge` with a fresh 32-byte nonce; its identity certificate
 * chains to the key file's root, checked by checkModuleCertificateWeb, and its identity key signed
 * our nonce and its transport key, an RSA key). Then the key file names it (`moduleSerial`) and
 * holds its proven transport key, OAEP hash and chain in `modules`, in place of any entry for
 * that serial; the other entries stay (receipts signed by the old module still verify).
 *
 * Returns the new serial, or undefined when no other module is listed (nothing saved). A module
 * that does not prove itself is CERT_INVALID and nothing is saved; the service's refusal of the
 * challenge, or a network failure, is thrown as it is (nothing saved either).
 */
export async function moveToAnotherModuleWeb(req: {
  http: HttpClient; state: () => Readonly<ClientState>; save: (state: ClientState) => Promise<void>; at: Date;
}): Promise<string | undefined> {
  const s = req.state();
  const listed = await req.http.get<{ modules?: WireModule[] }>('/v1/modules');
  const modules = Array.isArray(listed?.modules) ? listed.modules : [];
  const chosen = modules.find((m) => typeof m?.serial === 'string' && m.serial !== s.moduleSerial);
  if (!chosen) return undefined;
  const proven = await proveModuleWeb({ http: req.http, state: s, serial: chosen.serial, at: req.at });
  const state = req.state();
  await req.save({ ...state, moduleSerial: proven.serial, modules: [...state.modules.filter((m) => m.serial !== proven.serial), proven] });
  return proven.serial;
}

/** Registration step 1b for a meter that exists: the module's signed answer, checked; CERT_INVALID otherwise. */
async function proveModuleWeb(req: { http: HttpClient; state: Readonly<ClientState>; serial: string; at: Date }): Promise<KnownModule> {
  const { meterId, rootCertPem } = req.state;
  const clientNonce = randomBytes(32).toString('base64');
  const proof = await req.http.post<ModuleChallengeAnswer>(`/v1/registrations/${encodeURIComponent(meterId)}/challenge`, { moduleSerial: req.serial, clientNonce });
  checkChallengeAnswer(proof, req.serial);
  const identity = await checkModuleCertificateWeb({ rootCertPem, moduleSerial: req.serial, certificateChain: proof.certificateChain, at: req.at });
  await verifyModuleProofWeb({ identity, meterId, clientNonce, transportKey: proof.transportKey, signature: proof.signature });
  if (!(await isRsaKey(proof.transportKey, proof.oaepHash))) throw vbiError('CERT_INVALID', `module ${req.serial}: the signed transport key is not an RSA public key`);
  return { serial: req.serial, transportKey: proof.transportKey, oaepHash: proof.oaepHash, certificateChain: proof.certificateChain };
}

/** True when the SPKI imports into WebCrypto as an RSA-OAEP public key (what encryptToModule does with it). */
async function isRsaKey(spkiBase64: string, oaepHash: OaepHash): Promise<boolean> {
  try {
    await globalThis.crypto.subtle.importKey('spki', bytes(Buffer.from(spkiBase64, 'base64')),
      { name: 'RSA-OAEP', hash: oaepHash === 'sha1' ? 'SHA-1' : 'SHA-256' }, false, ['encrypt']);
    return true;
  } catch {
    return false;
  }
}
