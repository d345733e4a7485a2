import { checkChallengeAnswer } from './challenge-answer';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { vbiError } from '@vbi/core/errors';
import type { LabelSize } from '@vbi/core/indicium/render/label-request';
import { passwordSecret } from '@vbi/core/protocol/messages';
import { encryptToModule, hmacSha256 } from './client-crypto';
import { ClientState, KnownModule, registeringState } from './client-state';
import { isRegisters } from '@vbi/core/protocol/envelope';
import { HttpClient, NetworkError } from './http';
import { KeyFile } from './key-file';
import { checkModuleCertificate, verifyModuleProof } from './module-trust';
import type { ModuleChallengeAnswer, RegistrationCompleted, RegistrationCreated } from './wire';

/** What registering a new mailer takes. */
export interface RegistrationRequest {
  baseUrl: string;
  /** The postal root certificate(s), PEM: the only trust anchor for module identity certificates. */
  rootCertPem: string;
  name: string;
  /** 5 digits. */
  licensingZip: string;
  /** 1 to 5 lines. */
  returnAddress: string[];
  password: string;
  keyFilePath: string;
  /** Label defaults kept in the key file. */
  labelSize?: LabelSize;
  mailClass?: string;
}


/**
 * Registration, docs/protocol.md 1a-1c, client side:
 *  1a  ask for a meter;
 *  1b  check every announced module certificate against our root, send a fresh nonce to
 *      one module and check its identity signature over the nonce and its transport key;
 *  1c  send a fresh 32-byte HMK and the password secret, RSA-OAEP-encrypted to that
 *      transport key; check hmkProof = HMAC(HMK, challenge); save the key file.
 *
 * The key file is written (status 'pending') before 1c, so an HMK the module may have accepted
 * is never lost; it becomes 'active' when 1c's answer checks out. A refusal from the service
 * removes the pending file again; a network failure keeps it (the outcome is unknown).
 */
export async function registerMeter(req: RegistrationRequest, deps: { http: HttpClient; clock: () => number }): Promise<KeyFile<ClientState>> {
  await refuseExisting(req.keyFilePath);
  const at = () => new Date(deps.clock());
  const created = await deps.http.post<RegistrationCreated>('/v1/registrations', {
    name: req.name, licensingZip: req.licensingZip, returnAddress: req.returnAddress,
  });
  if (typeof created?.meterId !== 'string' || !Array.isArray(created.modules) || created.modules.length === 0) {
    throw vbiError('CERT_INVALID', 'the registration answer names no meter or no module');
  }
  const modules: KnownModule[] = created.modules.map((m) => {
    checkModuleCertificate({ rootCertPem: req.rootCertPem, moduleSerial: m.serial, certificateChain: m.certificateChain, at: at() });
    return { serial: m.serial, transportKey: m.transportKey, oaepHash: m.oaepHash, certificateChain: m.certificateChain };
  });

  const chosen = modules[0];
  const clientNonce = randomBytes(32).toString('base64');
  const proof = await deps.http.post<ModuleChallengeAnswer>(`/v1/registrations/${encodeURIComponent(created.meterId)}/challenge`, {
    moduleSerial: chosen.serial, clientNonce,
  });
  checkChallengeAnswer(proof, chosen.serial);
  verifyModuleProof({
    rootCertPem: req.rootCertPem, meterId: created.meterId, moduleSerial: chosen.serial, clientNonce,
    transportKey: proof.transportKey, certificateChain: proof.certificateChain, signature: proof.signature, at: at(),
  });
  // The signed answer wins over the unsigned list of 1a.
  const verified: KnownModule = { serial: chosen.serial, transportKey: proof.transportKey, oaepHash: proof.oaepHash, certificateChain: proof.certificateChain };
  modules[0] = verified;

  const hmk = randomBytes(32);
  const pending = registeringState({
    serverUrl: deps.http.baseUrl, created, moduleSerial: verified.serial, hmk, modules, rootCertPem: req.rootCertPem, defaults: req,
  });
  const file = await KeyFile.create({ path: req.keyFilePath, password: req.password, state: pending });

  let done: RegistrationCompleted;
  try {
    done = await deps.http.post<RegistrationCompleted>(`/v1/registrations/${encodeURIComponent(created.meterId)}/complete`, {
      moduleSerial: verified.serial, registrationToken: created.registrationToken,
      encryptedHmk: encryptToModule(verified, hmk),
      encryptedPasswordSecret: encryptToModule(verified, passwordSecret(req.password, created.meterId)),
    });
  } catch (e) {
    // The service answered "no": nothing was stored there, so the pending file is useless.
    if (!(e instanceof NetworkError)) await fs.rm(req.keyFilePath, { force: true });
    throw e;
  }
  const challenge = Buffer.from(String(done?.challenge ?? ''), 'base64');
  const proofMac = Buffer.from(String(done?.hmkProof ?? ''), 'base64');
  const expected = hmacSha256(hmk, challenge);
  if (challenge.length === 0 || proofMac.length !== expected.length || !timingSafeEqual(proofMac, expected)) {
    throw vbiError('BAD_MAC', 'hmkProof does not verify: the module did not take our HMK');
  }
  if (!isRegisters(done.registers)) throw vbiError('BAD_MAC', 'registration answer has no registers');
  await file.save({ ...pending, status: 'active', challenge: done.challenge, registers: { ascending: done.registers.ascending, descending: done.registers.descending } });
  return file;
}

async function refuseExisting(path: string): Promise<void> {
  try {
    await fs.access(path);
  } catch {
    return;
  }
  throw vbiError('BAD_REQUEST', `key file ${path} already exists; refusing to overwrite it (it may hold another meter's keys)`, { field: 'keyFile' });
}
