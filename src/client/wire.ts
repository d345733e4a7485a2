import type { ItemType } from '../indicium/fields';
import type { OperationalResponse, PrintedItem, RegisterEcho } from '../protocol/messages';
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

/** How a purchase is paid (sandbox tokens: tok_approve, tok_decline, tok_pending, ...). */
export interface Payment {
  kind: 'card' | 'ach' | 'check';
  token: string;
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

/** `rate` of a print item: the service prices the piece and refuses another postage. */
export interface WireRate {
  mailClass: string;
  weightOz: number;
  zone?: number;
}

/** One item of a print request. */
export interface WirePrintItem {
  counter: number;
  clientTime: number;
  destinationZip: string;
  postage: number;
  rate?: WireRate;
  itemType: ItemType;
  dateOfMailing: string;
  dynamicPassword: string;
}

/** One item of a print answer (shared with the service). */
export type WirePrintedItem = PrintedItem;

/** The answer to POST /v1/indicia. */
export interface PrintAnswer {
  authorization: OperationalResponse;
  items: WirePrintedItem[];
  registers: RegisterEcho;
}

/** The answer to POST /v1/corrections: the authorisation and the one printed item. */
export interface CorrectionAnswer {
  authorization: OperationalResponse;
  item: WirePrintedItem;
}

/** The answer to POST /v1/verify (result codes of docs/indicium.md: VALID, DUPLICATE, ...). */
export interface VerifyAnswer {
  result: string;
  reason?: string;
  fields?: Record<string, unknown>;
  digest?: string;
  firstSeen?: { seenAt: string; location?: string } | null;
}
