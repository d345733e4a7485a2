import { vbiError } from '@vbi/core/errors';
import { ClientState, KnownModule, registeringState } from '../../client/client-state';
import { FetchFn, HttpClient } from '../../client/http';
import { checkChallengeAnswer } from '../../client/challenge-answer';
import type { ModuleChallengeAnswer, RegistrationCompleted, RegistrationCreated } from '../../client/wire';
import type { LabelSize } from '@vbi/core/indicium/render/label-request';
import { isRegisters } from '@vbi/core/protocol/envelope';
import { webPasswordSecret } from '../crypto/password-secret';
import { encryptToModule, macMatches, randomBytes } from '../crypto/web-crypto';
import { WebKeyFile } from '../crypto/web-key-file';
import { checkModuleCertificateWeb, ModuleIdentity, verifyModuleProofWeb } from '../crypto/web-module-trust';
import type { Persist } from './web-client-core';

/** What registering a new mailer in the browser takes. */
export interface WebRegistrationRequest {
  baseUrl: string; rootCertPem: string; name: string; licensingZip: string; returnAddress: string[]; password: string; persist: Persist;
  labelSize?: LabelSize; mailClass?: string; clock?: () => number; fetch?: FetchFn;
}

/**
 * Registration (docs/protocol.md 1a-1c) as in packages/client/src/client/registration.ts: every module
 * certificate checked against the user's root, the module's signature over our nonce, then
 * the HMK and password secret RSA-OAEP-encrypted to its transport key. The key file is
 * persisted 'pending' before 1c and 'active' after hmkProof checks out.
 */
export async function registerWeb(req: WebRegistrationRequest): Promise<{ file: WebKeyFile<ClientState>; http: HttpClient; pwSecret: Buffer; identity: ModuleIdentity }> {
  const http = new HttpClient({ baseUrl: req.baseUrl, fetch: req.fetch });
  const at = new Date((req.clock ?? Date.now)());
  const created = await http.post<RegistrationCreated>('/v1/registrations', { name: req.name, licensingZip: req.licensingZip, returnAddress: req.returnAddress });
  if (typeof created?.meterId !== 'string' || !Array.isArray(created.modules) || created.modules.length === 0) {
    throw vbiError('CERT_INVALID', 'the registration answer names no meter or no module');
  }
  for (const m of created.modules) await checkModuleCertificateWeb({ rootCertPem: req.rootCertPem, moduleSerial: m.serial, certificateChain: m.certificateChain, at });
  const modules: KnownModule[] = created.modules.map((m) => ({ serial: m.serial, transportKey: m.transportKey, oaepHash: m.oaepHash, certificateChain: m.certificateChain }));
  const chosen = modules[0];
  const clientNonce = randomBytes(32).toString('base64');
  const proof = await http.post<ModuleChallengeAnswer>(`/v1/registrations/${encodeURIComponent(created.meterId)}/challenge`, { moduleSerial: chosen.serial, clientNonce });
  checkChallengeAnswer(proof, chosen.serial);
  const identity = await checkModuleCertificateWeb({ rootCertPem: req.rootCertPem, moduleSerial: chosen.serial, certificateChain: proof.certificateChain, at });
  await verifyModuleProofWeb({ identity, meterId: created.meterId, clientNonce, transportKey: proof.transportKey, signature: proof.signature });
  const verified: KnownModule = { serial: chosen.serial, transportKey: proof.transportKey, oaepHash: proof.oaepHash, certificateChain: proof.certificateChain };
  modules[0] = verified;

  const hmk = randomBytes(32);
  const pending = registeringState({ serverUrl: req.baseUrl, created, moduleSerial: verified.serial, hmk, modules, rootCertPem: req.rootCertPem, defaults: req });
  const file = await WebKeyFile.create({ password: req.password, state: pending });
  await req.persist(file.text);
  const pwSecret = await webPasswordSecret(req.password, created.meterId);
  const done = await http.post<RegistrationCompleted>(`/v1/registrations/${encodeURIComponent(created.meterId)}/complete`, {
    moduleSerial: verified.serial, registrationToken: created.registrationToken,
    encryptedHmk: await encryptToModule(verified, hmk), encryptedPasswordSecret: await encryptToModule(verified, pwSecret),
  });
  const challenge = Buffer.from(String(done?.challenge ?? ''), 'base64');
  if (challenge.length === 0 || !(await macMatches(hmk, challenge, done?.hmkProof))) throw vbiError('BAD_MAC', 'hmkProof does not verify: the module did not take our HMK');
  if (!isRegisters(done.registers)) throw vbiError('BAD_MAC', 'registration answer has no registers');
  await req.persist(await file.save({ ...pending, status: 'active', challenge: done.challenge, registers: { ascending: done.registers.ascending, descending: done.registers.descending } }));
  return { file, http, pwSecret, identity };
}
