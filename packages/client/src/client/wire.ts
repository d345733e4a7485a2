import type { PrintItemBody } from '@vbi/core/protocol/bodies';
import type { RegisterEcho } from '@vbi/core/protocol/messages';
import type { OaepHash } from './client-state';

/**
 * JSON shapes of docs/protocol.md as the client sends and receives them. Money is integer
 * mills, binary values base64.
 */

/** A module as registration step 1a lists it. */
export interface WireModule {
  serial: string;
  transportKey: string;
  oaepHash: OaepHash;
  certificateChain: string[];
}

/** 1a answer. */
export interface RegistrationCreated {
  registrationId: number | string;
  /** Proves to step 1c that this client is the one step 1a handed the meter to. */
  registrationToken: string;
  accountId: number | string;
  meterId: string;
  modules: WireModule[];
}

/** 1b answer. */
export interface ModuleChallengeAnswer {
  moduleSerial: string;
  transportKey: string;
  oaepHash: OaepHash;
  certificateChain: string[];
  signature: string;
}

/** 1c answer. */
export interface RegistrationCompleted {
  challenge: string;
  hmkProof: string;
  registers: RegisterEcho;
}

/** result of `balance`. */
export interface BalanceResult {
  ascending: number;
  descending: number;
  refundRegister: number;
  state: string;
}

/** One entry of `history`. */
export interface HistoryEntry {
  time: string;
  type: string;
  amount: number;
  ascending: number;
  descending: number;
}

/** result of a purchase or a settle. */
export interface PurchaseResult {
  /** The service's payment number (settle takes it). */
  paymentId: number;
  status: 'approved' | 'pending' | 'declined';
  amount?: number;
}

/** result of `session-open`. */
export interface SessionOpened {
  sessionId: string;
  heartbeatIntervalMs: number;
  timeoutMs: number;
}

/** Heartbeat request body (not an envelope). */
export interface HeartbeatRequest {
  meterId: string;
  counter: number;
  clientTime: number;
  dynamicPassword: string;
}
/** Heartbeat answer. */
export interface HeartbeatAnswer {
  counter: number;
  expiresAt: string | number;
}

/** A print item as the client sends it: it always names the item type and the date of mailing. */
export type WirePrintItem = PrintItemBody & Required<Pick<PrintItemBody, 'itemType' | 'dateOfMailing'>>;

/** The answer to POST /v1/verify (result codes of docs/indicium.md: VALID, DUPLICATE, ...). */
export interface VerifyAnswer {
  result: string;
  reason?: string;
  fields?: Record<string, unknown>;
  digest?: string;
  firstSeen?: { seenAt: string; location?: string } | null;
}
