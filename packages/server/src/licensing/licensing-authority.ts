import { LICENCE_ID_PATTERN } from '@vbi/core/psd/psd-package';

/**
 * The boundary to the postal licensing authority (the USPS Computerized Meter Licensing System,
 * CMLS, in WO 99/41690: the registration form — PS Form 3601-A — goes to the authority, which
 * returns a licence number; the vendor reports revocations to it). One narrow interface; the dev
 * authority (./dev-authority.ts) and the HTTP adapter (./cmls-http-authority.ts; docs/licensing.md)
 * live behind it.
 *
 * Contract every authority keeps:
 * - `requestId` is the idempotency key at the authority: submit() called again with the same
 *   requestId (a retry, or the licensing pass asking about a pending request) must not file a
 *   second application; it answers the request's current state.
 * - A refusal and a request still under review are answers (`refused`, `pending`), not exceptions.
 * - An exception that is a LicensingLinkError means "no answer": the request may or may not have
 *   reached the authority, and asking again with the same requestId is safe. Any other exception
 *   is a bug; the queue records it and asks again at the next pass.
 * - reportRevocation() resolves once the authority has recorded the revocation (or had it
 *   already: reporting the same licence's revocation again is safe and files nothing new). It
 *   throws as submit() does, and the revocation is reported again at the next pass — except a
 *   LicenceUnknownError: the authority answered that it has no such licence, so the report can
 *   never be recorded and is not sent again.
 * - licenceEvents(after) answers the authority's own revocations (a post office withdrew a
 *   licence) after a cursor it gave earlier (null: from the first), oldest first, with the cursor
 *   to ask with next; asked again with the same cursor it answers the same events. It throws as
 *   submit() does, and the same cursor is asked again at the next pass.
 */

/** What the licence application carries (the fields of PS Form 3601-A this service holds). */
export interface LicenceApplication {
  /** Our id of the request (license_requests.request_id): the authority's idempotency key. */
  requestId: number;
  meterId: string;
  /** Serial (hex) of the meter's indicium key certificate, issued by the postal CA. */
  certSerial: string;
  /** The mailer's (account's) name. */
  accountName: string;
  /** The mailer's return address, 1 to 4 lines. */
  returnAddress: string[];
  /** The post office ZIP the meter is licensed at and prints as its origin. */
  licensingZip: string;
  /** When step 1c committed (ISO 8601). */
  registeredAt: string;
}

/** The authority's answer. */
export type LicenceDecision =
  | { status: 'approved'; licenceId: string }
  | { status: 'refused'; reason: string }
  /** Still under review: ask again (same requestId) at a later pass; `authorityRef` is the authority's case number, if it gives one. */
  | { status: 'pending'; authorityRef?: string };

/** A licence the vendor revoked (an operator's revoke-licence), as the authority is told of it. */
export interface LicenceRevocation {
  meterId: string;
  /** The authority's licence number, as the meter's package held it. */
  licenceId: string;
  /** The operator's reason. */
  reason: string;
  /** When the revocation committed (ISO 8601). */
  revokedAt: string;
}

/** A licence the authority revoked itself, as its event feed tells of it. */
export interface AuthorityRevocation {
  /** The authority's licence number (as the meter's package holds it). */
  licenceId: string;
  /** The authority's reason (its code and text). */
  reason: string;
  /** When the authority revoked it (ISO 8601). */
  revokedAt: string;
}

/** One page of the authority's licence events. */
export interface LicenceEvents {
  revocations: AuthorityRevocation[];
  /** The cursor to ask with next (the same one when nothing is new). */
  cursor: string;
  /** More events wait after this page. */
  more: boolean;
}

/** A postal licensing authority (CMLS, or the dev authority). */
export interface LicensingAuthority {
  /** Short name for logs and the licence request rows ('dev', 'cmls-http', ...). */
  readonly name: string;
  submit(application: LicenceApplication): Promise<LicenceDecision>;
  reportRevocation(revocation: LicenceRevocation): Promise<void>;
  licenceEvents(after: string | null): Promise<LicenceEvents>;
}

/** A cursor as the authority may give it: printable, no spaces, at most 256 characters. */
export const EVENT_CURSOR_PATTERN = /^[\x21-\x7e]{1,256}$/;
const EVENTS_MAX = 1_000;

/** The authority's events as the contract says they must look; anything else throws (no answer: the same cursor is asked again). */
export function checkedEvents(e: LicenceEvents): LicenceEvents {
  const fits = (r: AuthorityRevocation) => typeof r?.licenceId === 'string' && r.licenceId !== '' && LICENCE_ID_PATTERN.test(r.licenceId)
    && typeof r.reason === 'string' && r.reason.trim() !== '' && r.reason.length <= 500
    && typeof r.revokedAt === 'string' && !Number.isNaN(Date.parse(r.revokedAt));
  if (typeof e?.cursor === 'string' && EVENT_CURSOR_PATTERN.test(e.cursor) && typeof e.more === 'boolean'
    && Array.isArray(e.revocations) && e.revocations.length <= EVENTS_MAX && e.revocations.every(fits)) return e;
  throw new Error(`the authority's events do not fit the contract: ${JSON.stringify(e)?.slice(0, 200)}`);
}

/** The authority's answer as the contract says it must look; anything else throws (no answer: the request stays pending). */
export function checkedDecision(d: LicenceDecision): LicenceDecision {
  if (d?.status === 'approved' && typeof d.licenceId === 'string' && d.licenceId !== '' && LICENCE_ID_PATTERN.test(d.licenceId)) return d;
  if (d?.status === 'refused' && typeof d.reason === 'string' && d.reason.trim() !== '') return d;
  if (d?.status === 'pending' && (d.authorityRef === undefined || (typeof d.authorityRef === 'string' && d.authorityRef.length <= 128))) return d;
  throw new Error(`the authority's answer does not fit the contract: ${JSON.stringify(d)?.slice(0, 200)}`);
}

/** The authority answered that it has no licence of this number: a revocation report of it is never recorded. */
export class LicenceUnknownError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LicenceUnknownError';
  }
}

/** The link to the authority failed (timeout, connection refused, 5xx): no answer, asking again is safe. */
export class LicensingLinkError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LicensingLinkError';
  }
}
