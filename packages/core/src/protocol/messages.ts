import { scryptSync } from 'node:crypto';
import { canonicalJson } from './canonical-json';
import type { ReceiptBatch } from './receipt-batch';

/**
 * The mailer ↔ module protocol (docs/protocol.md), shared by the service and the client SDK so
 * both compute exactly the same bytes. WO 01/29778 FIG. 7: every request carries the module's last
 * challenge, the client's copy of the registers and an HMAC with the shared HMK over the whole
 * message; the module answers with a new challenge and its own HMAC. The secure on-line printing
 * claims: a continuous session proved by dynamic passwords. Versioned by the PROTOCOL tag inside every MAC input.
 */
export const PROTOCOL = 'VBI-OP-1';

export const OPERATIONS = ['session-open', 'session-close', 'purchase', 'print', 'refund', 'correction', 'balance', 'history', 'redeliver', 'rekey'] as const;
export type Operation = (typeof OPERATIONS)[number];

export interface RegisterEcho {
  /** Ascending register, mills, as the client last saw it. */
  ascending: number;
  /** Descending register, mills. */
  descending: number;
}

/** Every operational request. `mac` = base64 HMAC-SHA256(HMK, requestMacInput(rest)). */
export interface OperationalRequest<B = Record<string, unknown>> {
  meterId: string;
  op: Operation;
  /** base64 of the challenge the module issued last. */
  challenge: string;
  registers: RegisterEcho;
  body: B;
  mac: string;
}

/**
 * Re-key (docs/protocol.md 7): what the new HMK proves it reached the module with,
 * HMAC(new HMK, rekeyProofInput(meterId, proofNonce)).
 */
export function rekeyProofInput(meterId: string, proofNonce: string): Buffer {
  return Buffer.from(`${PROTOCOL}\nrekey-proof\n${meterId}\n${proofNonce}`, 'utf8');
}

export function requestMacInput(r: Omit<OperationalRequest, 'mac'>): Buffer {
  return Buffer.from(`${PROTOCOL}\nrequest\n${canonicalJson({ meterId: r.meterId, op: r.op, challenge: r.challenge, registers: r.registers, body: r.body })}`, 'utf8');
}

/**
 * A receipt (WO 99/41690): what happened, when, the per-meter sequence number (the package's
 * record counter, also for a printed item: its piece number is in the indicium) and the module's
 * signature (identity key, ECDSA P-256, raw r||s, base64).
 */
export interface Receipt {
  meterId: string;
  op: Operation;
  amount: number;
  ascendingRegister: number;
  descendingRegister: number;
  sequence: number;
  time: string;
  moduleSerial: string;
  checkpointSeq: number;
  /**
   * The module's signature: over receiptSignedBytes(the fields above) for a single receipt, over
   * receiptBatchSignedBytes(root, size) for a batch receipt (packages/core/src/protocol/receipt-batch.ts).
   */
  signature: string;
  /** Present on a print or correction item's receipt: its place in the request's receipt tree. */
  batch?: ReceiptBatch;
}

export function receiptSignedBytes(r: Omit<Receipt, 'signature'>): Buffer {
  return Buffer.from(`${PROTOCOL}\nreceipt\n${canonicalJson(r)}`, 'utf8');
}

/** Every operational response. `mac` = base64 HMAC-SHA256(HMK, responseMacInput(rest)). */
export interface OperationalResponse<R = Record<string, unknown>> {
  meterId: string;
  op: Operation;
  /** The challenge the module expects in the next request. */
  challenge: string;
  registers: RegisterEcho;
  result: R;
  receipt: Receipt;
  mac: string;
}

export function responseMacInput(r: Omit<OperationalResponse, 'mac'>): Buffer {
  return Buffer.from(`${PROTOCOL}\nresponse\n${canonicalJson({ meterId: r.meterId, op: r.op, challenge: r.challenge, registers: r.registers, result: r.result, receipt: r.receipt })}`, 'utf8');
}

/**
 * The dynamic password of the secure on-line printing claims (continuous link): HMAC-SHA256(HMK, dynamicPasswordInput(...)), over the
 * session, a counter that rises by one per use, the client's clock and, for a print, the
 * destination and the amount — so it is good for exactly one heartbeat or one print.
 */
export interface DynamicPasswordInput {
  meterId: string;
  sessionId: string;
  counter: number;
  /** Client time, ms since epoch. */
  clientTime: number;
  purpose: 'heartbeat' | 'print';
  destinationZip?: string;
  postage?: number;
}

export function dynamicPasswordInput(d: DynamicPasswordInput): Buffer {
  return Buffer.from(`${PROTOCOL}\ndynamic-password\n${canonicalJson(d)}`, 'utf8');
}

/** Registration: what the module signs with its identity key to prove itself to a new client. */
export function registrationChallengeBytes(r: { meterId: string; clientNonce: string; transportKeySpki: string }): Buffer {
  return Buffer.from(`${PROTOCOL}\nregistration-challenge\n${canonicalJson(r)}`, 'utf8');
}

/**
 * The 32-byte password secret the client sends (RSA-OAEP-encrypted) instead of the password:
 * scrypt(password, "VBI-PASSWORD" || meter id). The module keeps only an HMAC verifier of it.
 */
export function passwordSecret(password: string, meterId: string): Buffer {
  const k = PASSWORD_SECRET_KDF;
  return scryptSync(password.normalize('NFKC'), passwordSecretSalt(meterId), k.keyLength, { N: k.N, r: k.r, p: k.p });
}

/** scrypt parameters of the password secret; the module keeps a verifier of it, so never change them. */
export const PASSWORD_SECRET_KDF = { N: 1 << 14, r: 8, p: 1, keyLength: 32 } as const;

/** The scrypt salt of the password secret: it binds the secret to one meter. */
export function passwordSecretSalt(meterId: string): string {
  return `VBI-PASSWORD\n${meterId}`;
}

/**
 * The resync exchange (docs/protocol.md 6): a client whose challenge or register copy no longer
 * matches the module's (an answer lost, a crash) proves the HMK over a fresh nonce instead of the
 * challenge. `mac` = base64 HMAC-SHA256(HMK, resyncMacInput(rest)).
 */
export interface ResyncRequest {
  meterId: string;
  /** base64 of 16..64 fresh random bytes: the answer carries it back. */
  clientNonce: string;
  /** The client's clock, ms since epoch: within 5 minutes of the module's. */
  clientTime: number;
  /** The newest receipt sequence the client has seen; the answer lists the meter's transactions after it. */
  afterSequence: number;
  mac: string;
}

export function resyncMacInput(r: Omit<ResyncRequest, 'mac'>): Buffer {
  return Buffer.from(`${PROTOCOL}
resync
${canonicalJson({ meterId: r.meterId, clientNonce: r.clientNonce, clientTime: r.clientTime, afterSequence: r.afterSequence })}`, 'utf8');
}

/** One of the meter's transactions in a resync answer, as the journal records it. */
export interface MeterTransaction {
  /** The meter's record counter after it (the receipt's `sequence`). */
  sequence: number;
  /** Checkpoint record type: pvd, indicium, correction, refund, inquiry, session, … */
  type: string;
  amount: number;
  ascending: number;
  descending: number;
  time: string;
  /** The receipt the module signed then, when the transaction answered a mailer request. */
  receipt?: Receipt;
  /** The indicia it printed: id, piece number (`sequence`, as the indicium carries it) and, for a print or correction request, batch and place. */
  indicia?: Array<{ indiciumId: number; sequence: number; batchId?: string; index?: number }>;
}

/** The module's answer: signed by the module identity key, MACed with the HMK. */
export interface ResyncResponse {
  meterId: string;
  clientNonce: string;
  /** The challenge the module expects in the next operational request. */
  challenge: string;
  registers: RegisterEcho;
  /** The meter's state (active, suspended, …). */
  state: string;
  /** The meter's record counter after this exchange. */
  sequence: number;
  time: string;
  moduleSerial: string;
  checkpointSeq: number;
  /** Transactions after the request's `afterSequence`, oldest first, at most 200. */
  transactions: MeterTransaction[];
  /** True when there are more after the last one listed: resync again from it. */
  more: boolean;
  /** base64 raw r||s, ECDSA P-256 / SHA-256 over resyncSignedBytes (everything but signature and mac). */
  signature: string;
  mac: string;
}

export function resyncSignedBytes(r: Omit<ResyncResponse, 'signature' | 'mac'>): Buffer {
  return Buffer.from(`${PROTOCOL}
resync-answer
${canonicalJson(r)}`, 'utf8');
}

export function resyncResponseMacInput(r: Omit<ResyncResponse, 'mac'>): Buffer {
  return Buffer.from(`${PROTOCOL}
resync-response
${canonicalJson(r)}`, 'utf8');
}
