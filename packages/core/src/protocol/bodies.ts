import type { ItemType } from '../indicium/fields';
import type { OperationalResponse, Receipt, RegisterEcho } from './messages';

/**
 * The body of each operational request (docs/protocol.md), declared once: the service's JSON
 * Schemas (packages/server/src/api/schemas.ts) are checked against these types at compile time, the mailer
 * service takes them, and the client SDK and the web app build them. Money is integer mills,
 * binary values base64. Type aliases, not interfaces: a body must be assignable to a JSON object type.
 */

/** No members: the envelope alone asks for the registers. */
export type BalanceBody = Record<never, never>;

export type HistoryBody = {
  /** 1..500, default 50. */
  limit?: number;
};

/** How a purchase is paid (sandbox tokens: tok_approve, tok_decline, tok_pending, ...). */
export type Payment = {
  kind: 'card' | 'ach' | 'check';
  token: string;
};

export type PurchaseBody = {
  amount: number;
  payment: Payment;
};

export type SettleBody = {
  paymentId: number;
};

export type RefundBody = {
  kind: 'partial' | 'full';
  /** Mills; a partial refund only. */
  amount?: number;
  reason: string;
};

/** Session open: the password secret and a fresh session key, each encrypted to the module's transport key. */
export type SessionOpenBody = {
  moduleSerial: string;
  /** RSA-OAEP ciphertexts under the module's transport key, base64. */
  encryptedPasswordSecret: string;
  encryptedSessionKey: string;
};

/** What every request made inside a live session names first: the session. */
export type InSession = {
  sessionId: string;
};

/** Session close: the session ends; its key is no longer used. */
export type SessionCloseBody = InSession;

/** Re-key (docs/protocol.md 7): the current password secret, a new HMK and password secret, and the nonce the new HMK proves. */
export type RekeyBody = {
  moduleSerial: string;
  encryptedPasswordSecret: string;
  encryptedNewHmk: string;
  encryptedNewPasswordSecret: string;
  proofNonce: string;
};

/** `rate` of a print item: the service prices the piece and refuses another postage. */
export type PrintRate = {
  mailClass: string;
  weightOz: number;
  zone?: number;
};

/** One item of a print or correction request. */
export type PrintItemBody = {
  /** The session's dynamic-password counter this item uses. */
  counter: number;
  /** Client time, ms since epoch. */
  clientTime: number;
  /** 5, 9 or 11 digits, or empty. */
  destinationZip: string;
  /** Mills. */
  postage: number;
  rate?: PrintRate;
  /** Default 'postage'. */
  itemType?: ItemType;
  /** 'YYYY-MM-DD'; default the service's date. */
  dateOfMailing?: string;
  /** base64 HMAC-SHA256(HMK, dynamicPasswordInput(...)) for purpose 'print'. */
  dynamicPassword: string;
};

/** A print request: 1 to 500 items, in a live session. */
export type PrintBody = InSession & {
  items: PrintItemBody[];
};

/** A correction indicium for the additional postage of an indicium printed before, in a live session. */
export type CorrectionBody = InSession & {
  originalIndiciumId: number;
  item: PrintItemBody;
};

/** Exactly one selector: batchId, idempotencyKey, or fromSequence with toSequence. */
export type RedeliverBody = InSession & {
  batchId?: string;
  idempotencyKey?: string;
  fromSequence?: number;
  toSequence?: number;
};

/**
 * One item of a print answer (docs/protocol.md section 4): printed (debited), voided (the
 * session ended first) or failed (the item was refused; its transaction rolled back).
 */
export interface PrintItemAnswer {
  index: number;
  status: 'printed' | 'voided' | 'failed';
  indiciumId?: number;
  /** base64 IV(12) || AES-256-GCM ciphertext || tag(16) under the session key. */
  encryptedIndicium?: string;
  receipt?: Receipt;
  reason?: string;
}

/** The answer to a print request (POST /v1/indicia). */
export interface PrintAnswer {
  authorization: OperationalResponse;
  items: PrintItemAnswer[];
  registers: RegisterEcho;
}

/** The answer to a correction (POST /v1/corrections): the authorisation and the one printed item. */
export interface CorrectionAnswer {
  authorization: OperationalResponse;
  item: PrintItemAnswer;
}

/** AES-GCM AAD of an indicium encrypted to a session for the print item with this counter. */
export function indiciumAad(sessionId: string, counter: number): Buffer {
  return Buffer.from(`VBI-INDICIUM\n${sessionId}\n${counter}`, 'utf8');
}

/**
 * AAD of an indicium sent again (op `redeliver`) under the session key of the session that asks:
 * it names that session and the indicium, never a print counter.
 */
export function redeliveryAad(sessionId: string, indiciumId: number): Buffer {
  return Buffer.from(`VBI-INDICIUM-REDELIVERED\n${sessionId}\n${indiciumId}`, 'utf8');
}
