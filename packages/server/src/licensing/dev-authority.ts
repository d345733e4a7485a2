import {
  AuthorityRevocation, LicenceApplication, LicenceDecision, LicenceEvents, LicenceRevocation, LicenceUnknownError, LicensingAuthority, LicensingLinkError,
} from './licensing-authority';

/**
 * The licensing authority of development and test deployments (docs/licensing.md). It checks what
 * the real one would refuse outright and approves the rest at once:
 * - the licensing ZIP is 5 digits and not 00000 (no post office has it);
 * - the account name is not blank;
 * - the return address has at least one line that is not blank.
 * A refusal names the first check that failed. The licence number is `DEV-<ZIP>-<request id>`.
 *
 * For the queue's other paths, per request: the first `linkFailures` submissions throw
 * LicensingLinkError (no answer), the next `pendingAnswers` are answered `pending` (a review that
 * takes a while: the licensing pass asks again), then the request is decided. It keeps the
 * newest applications it saw, for tests.
 *
 * Revocation reports are recorded once per licence number (a report repeated is not recorded
 * again, as the real authority files nothing new); per licence, the first `revocationLinkFailures`
 * reports throw LicensingLinkError. Every report answered, repeats included, is kept in `reports`.
 * A licence number not of its own form (`DEV-<ZIP>-<6 digits>`) is one it never issued:
 * LicenceUnknownError.
 *
 * Its own revocations (a licence the post withdraws) are what `revoke()` was told, in order; the
 * event cursor is their count (the first `eventLinkFailures` feed requests throw LicensingLinkError,
 * a page holds at most `eventsPerPage`). Nothing in the dev service calls `revoke()`: tests do.
 */
export class DevLicensingAuthority implements LicensingAuthority {
  readonly name = 'dev';
  private readonly asked = new Map<number, number>();
  readonly applications: LicenceApplication[] = [];
  /** Revocations recorded, one per licence number. */
  readonly revocations = new Map<string, LicenceRevocation>();
  /** Every revocation report that got an answer, repeats included (the newest KEPT_APPLICATIONS). */
  readonly reports: LicenceRevocation[] = [];
  private readonly reportsAsked = new Map<string, number>();

  /** The authority's own revocations, oldest first (the event feed). */
  readonly ownRevocations: AuthorityRevocation[] = [];
  private eventsAsked = 0;

  constructor(private readonly opts: { linkFailures?: number; pendingAnswers?: number; revocationLinkFailures?: number; eventLinkFailures?: number; eventsPerPage?: number } = {}) {}

  /** The authority revokes a licence itself (the post withdrew it): an event of its feed. */
  revoke(licenceId: string, reason: string, at = new Date()): void {
    this.ownRevocations.push({ licenceId, reason, revokedAt: at.toISOString() });
  }

  async licenceEvents(after: string | null): Promise<LicenceEvents> {
    if (++this.eventsAsked <= (this.opts.eventLinkFailures ?? 0)) throw new LicensingLinkError('dev authority: no answer (link failure)');
    const from = after === null ? 0 : Number(after);
    if (!Number.isSafeInteger(from) || from < 0 || from > this.ownRevocations.length) throw new Error(`dev authority: unknown event cursor ${after}`);
    const page = this.ownRevocations.slice(from, from + (this.opts.eventsPerPage ?? 100));
    const cursor = from + page.length;
    return { revocations: page, cursor: String(cursor), more: cursor < this.ownRevocations.length };
  }

  async reportRevocation(revocation: LicenceRevocation): Promise<void> {
    const n = (this.reportsAsked.get(revocation.licenceId) ?? 0) + 1;
    this.reportsAsked.set(revocation.licenceId, n);
    if (n <= (this.opts.revocationLinkFailures ?? 0)) throw new LicensingLinkError('dev authority: no answer (link failure)');
    if (!/^DEV-\d{5}-\d{6}$/.test(revocation.licenceId)) throw new LicenceUnknownError(`dev authority: no licence ${revocation.licenceId}`);
    this.reports.push(revocation);
    if (this.reports.length > KEPT_APPLICATIONS) this.reports.shift();
    if (!this.revocations.has(revocation.licenceId)) this.revocations.set(revocation.licenceId, revocation);
  }

  async submit(application: LicenceApplication): Promise<LicenceDecision> {
    this.applications.push(application);
    if (this.applications.length > KEPT_APPLICATIONS) this.applications.shift();
    const n = (this.asked.get(application.requestId) ?? 0) + 1;
    this.asked.set(application.requestId, n);
    const failures = this.opts.linkFailures ?? 0;
    if (n <= failures) throw new LicensingLinkError('dev authority: no answer (link failure)');
    if (n <= failures + (this.opts.pendingAnswers ?? 0)) return { status: 'pending', authorityRef: `DEV-CASE-${application.requestId}` };
    const refusal = devRefusal(application);
    if (refusal) return { status: 'refused', reason: refusal };
    return { status: 'approved', licenceId: `DEV-${application.licensingZip}-${String(application.requestId).padStart(6, '0')}` };
  }
}

/** The newest applications kept for inspection (a dev service runs for days). */
const KEPT_APPLICATIONS = 1_000;

/** Why the dev authority refuses an application, or null when it approves it. */
export function devRefusal(a: Pick<LicenceApplication, 'licensingZip' | 'accountName' | 'returnAddress'>): string | null {
  if (typeof a.licensingZip !== 'string' || !/^\d{5}$/.test(a.licensingZip) || a.licensingZip === '00000') {
    return `licensing ZIP '${String(a.licensingZip)}' is not the 5-digit ZIP of a post office`;
  }
  if (typeof a.accountName !== 'string' || a.accountName.trim() === '') return 'the account name is missing';
  if (!Array.isArray(a.returnAddress) || !a.returnAddress.some((l) => typeof l === 'string' && l.trim() !== '')) return 'the return address is missing';
  return null;
}
