import { vbiError } from '@vbi/core/errors';
import type { LabelSize } from '@vbi/core/indicium/render/label-request';
import type { OperationalRequest, RegisterEcho } from '@vbi/core/protocol/messages';
import type { PrintItemRequest } from './print-item';
import type { RegistrationCreated } from './wire';

/** RSA-OAEP hash of a module transport key, as the service announces it. */
export type OaepHash = 'sha1' | 'sha256';

/** A module the client has verified against its root (registration steps 1a/1b). */
export interface KnownModule {
  /** Token serial = CN of the module identity certificate. */
  serial: string;
  /** base64 DER SubjectPublicKeyInfo of the module transport key (RSA). */
  transportKey: string;
  oaepHash: OaepHash;
  /** PEM, identity certificate first, then the issuing CA(s). Verified to `rootCertPem` at registration. */
  certificateChain: string[];
}

/** What the mailer prints with unless told otherwise. */
export interface SessionDefaults {
  name: string;
  licensingZip: string;
  /** Printed as the label's return address. */
  returnAddress: string[];
  labelSize: LabelSize;
  mailClass: string;
}

/**
 * Everything the client keeps between runs, stored encrypted in the key file
 * (./key-file.ts). Persisted: add fields, never rename them; bump `version` for a change
 * that old clients must not read.
 */
export interface ClientState {
  version: 1;
  /** 'pending' from just before registration step 1c until its answer is checked. */
  status: 'pending' | 'active';
  serverUrl: string;
  meterId: string;
  accountId?: number | string;
  registrationId?: number | string;
  /** Step 1a's token, kept while the registration is pending so 1c can be sent again. */
  registrationToken?: string;
  /**
   * The module the client encrypts its secrets to (registration, session-open, re-key): the one
   * that proved itself at registration, or the one the client moved to (./module-move.ts).
   */
  moduleSerial: string;
  /** base64 of the 32-byte HMAC key shared with the module (never leaves this file in clear). */
  hmk: string;
  /** base64 of the challenge the module issued last; '' while pending. */
  challenge: string;
  /** The client's copy of the meter's registers, mills. */
  registers: RegisterEcho;
  /** The newest receipt sequence (the meter's record counter) the client has seen; resync lists what came after. */
  lastSequence?: number;
  /**
   * Requests that move money or print value, saved just before they are sent and removed once
   * their answer is handled: after a lost answer or a crash, recover() sends them again with
   * the same Idempotency-Key and the same bytes.
   */
  pending?: PendingRequest[];
  /**
   * A re-key sent and not yet settled (docs/protocol.md 7): the new HMK, the new password secret
   * and, for a password change, the new password (the key file is written under it once the
   * module has taken the new secrets). Settled by VbiClient.rekey() or recover().
   */
  pendingRekey?: { hmk: string; passwordSecret: string; newPassword?: string };
  /**
   * Every module verified against `rootCertPem` (at registration, by refreshModules, by a move);
   * receipts are checked with their identity keys. Secrets go only to `moduleSerial`, whose entry
   * holds the transport key that module signed for this client (registration step 1b, or a move).
   */
  modules: KnownModule[];
  /** The trust anchor the modules were verified against. */
  rootCertPem: string;
  defaults: SessionDefaults;
}

/**
 * The state written just before registration step 1c ('pending', no challenge yet): the meter of
 * step 1a, the module that proved itself in 1b, the new HMK and the label defaults.
 */
export function registeringState(req: {
  serverUrl: string; created: RegistrationCreated; moduleSerial: string; hmk: Buffer; modules: KnownModule[]; rootCertPem: string;
  defaults: Omit<SessionDefaults, 'labelSize' | 'mailClass'> & { labelSize?: LabelSize; mailClass?: string };
}): ClientState {
  const { created, defaults } = req;
  return {
    version: 1, status: 'pending', serverUrl: req.serverUrl, meterId: created.meterId,
    accountId: created.accountId, registrationId: created.registrationId, registrationToken: created.registrationToken, moduleSerial: req.moduleSerial,
    hmk: req.hmk.toString('base64'), challenge: '', registers: { ascending: 0, descending: 0 },
    modules: req.modules, rootCertPem: req.rootCertPem,
    defaults: {
      name: defaults.name, licensingZip: defaults.licensingZip, returnAddress: defaults.returnAddress,
      labelSize: defaults.labelSize ?? 'label-4x6', mailClass: defaults.mailClass ?? 'first-class-letter',
    },
  };
}

/** The module the key file names, with the transport key it proved (CERT_INVALID when the state holds none). */
export function ownModule(state: ClientState): KnownModule {
  const module = findModule(state, state.moduleSerial);
  if (!module) throw vbiError('CERT_INVALID', `key file names module ${state.moduleSerial} but holds no verified key for it`);
  return module;
}

/** The module `serial` from the state, or undefined. */
export function findModule(state: ClientState, serial: string): KnownModule | undefined {
  return state.modules.find((m) => m.serial === serial);
}

/** The state with `p` added to the pending requests (saved before `p` is sent). */
export function withPending(state: ClientState, p: PendingRequest): ClientState {
  return { ...state, pending: [...(state.pending ?? []), p] };
}

/** The pending requests but the one with this Idempotency-Key (its answer was handled, or it was refused). */
export function pendingWithout(state: ClientState, idempotencyKey: string): PendingRequest[] {
  return (state.pending ?? []).filter((x) => x.idempotencyKey !== idempotencyKey);
}

/** A purchase, print or correction whose answer the client has not handled yet. */
export interface PendingRequest {
  op: 'purchase' | 'print' | 'correction';
  path: string;
  idempotencyKey: string;
  envelope: OperationalRequest;
  /** Print and correction: what the mailer asked for, to check the indicia against. */
  requests?: PrintItemRequest[];
  /** ms since epoch. */
  sentAt: number;
}
