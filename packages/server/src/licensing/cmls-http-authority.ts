import { Agent, request } from 'node:https';
import { SOFTWARE_ID } from '../module/commands/create-indicium';
import {
  AuthorityRevocation, checkedDecision, checkedEvents, LicenceApplication, LicenceUnknownError, LicenceDecision, LicenceEvents, LicenceRevocation, LicensingAuthority, LicensingLinkError,
} from './licensing-authority';
import { CmlsHttpOptions, VENDOR_ID_PATTERN } from '../config/cmls-settings';

/** How the adapter reaches the authority: packages/server/src/config/cmls-settings.ts reads it from the environment. */
export type { CmlsHttpOptions };

/** An answer larger than this is not one the API gives: the exchange is cut off (no answer). */
const ANSWER_MAX_BYTES = 64 * 1024;
/** The most of an authority's error text kept in a request row's last_error. */
const ERROR_TEXT_MAX = 200;

/**
 * The adapter to the postal licensing authority's HTTP licensing service (CMLS; the HTTP shape and
 * the answer table: docs/licensing.md). One PUT per application, idempotent on our request id; one
 * POST per revocation, idempotent on the licence number; one GET per page of the authority's
 * licence events. JSON over HTTPS with the vendor's client
 * certificate; the server must present a certificate from the configured CA. Errors carry the
 * HTTP status and the authority's error code and message, never the request or its keys.
 */
export class CmlsHttpAuthority implements LicensingAuthority {
  readonly name = 'cmls-http';
  private readonly agent: Agent;
  private readonly base: URL;

  constructor(private readonly opts: CmlsHttpOptions) {
    if (!VENDOR_ID_PATTERN.test(opts.vendorId)) throw new Error('the CMLS vendor id must be 1 to 64 letters, digits, ".", "_" or "-"');
    this.base = new URL(opts.url);
    if (this.base.protocol !== 'https:') throw new Error('the CMLS URL must be https');
    // no keep-alive: one exchange per request or revocation, a few a minute at most
    this.agent = new Agent({ cert: opts.clientCert, key: opts.clientKey, ca: opts.ca, keepAlive: false, rejectUnauthorized: true });
  }

  async submit(a: LicenceApplication): Promise<LicenceDecision> {
    const path = `licence-applications/${a.requestId}`;
    const answer = await this.exchange('PUT', path, `${this.opts.vendorId}-${a.requestId}`, {
      form: '3601-A',
      meter: { meterId: a.meterId, indiciumCertificateSerial: a.certSerial, vendorProduct: SOFTWARE_ID },
      applicant: { name: a.accountName, address: a.returnAddress },
      licensingPostOffice: { zip: a.licensingZip },
      registeredAt: a.registeredAt,
    });
    const body = answer.body as Record<string, unknown>;
    if ((answer.status === 200 || answer.status === 201) && body.status === 'approved' && typeof body.licenceNumber === 'string') {
      return checkedDecision({ status: 'approved', licenceId: body.licenceNumber });
    }
    if (answer.status === 200 && body.status === 'refused' && typeof body.reasonCode === 'string' && typeof body.reason === 'string' && body.reasonCode !== '') {
      return checkedDecision({ status: 'refused', reason: `${body.reasonCode}: ${body.reason}` });
    }
    if (answer.status === 202 && body.status === 'under-review' && (body.caseNumber === undefined || typeof body.caseNumber === 'string')) {
      return checkedDecision({ status: 'pending', ...(body.caseNumber === undefined ? {} : { authorityRef: body.caseNumber }) });
    }
    throw malformed(answer);
  }

  async reportRevocation(r: LicenceRevocation): Promise<void> {
    const path = `licences/${encodeURIComponent(r.licenceId)}/revocations`;
    // a licence is revoked once: its number names the revocation
    const answer = await this.exchange('POST', path, `${this.opts.vendorId}-revocation-${r.licenceId}`, { reason: r.reason, revokedAt: r.revokedAt }).catch((e: Error & { status?: number; authorityCode?: string }) => {
      throw e.status === 404 && e.authorityCode === 'UNKNOWN_LICENCE' ? new LicenceUnknownError(e.message) : e;
    });
    const body = answer.body as Record<string, unknown>;
    if ((answer.status === 200 || answer.status === 201) && body.status === 'revoked' && body.licenceNumber === r.licenceId) return;
    throw malformed(answer);
  }

  /**
   * The authority's own licence events after `after` (docs/licensing.md, "The authority's
   * revocations"): `GET .../licence-events?after=`; `licence-revoked` events become revocations,
   * events of other types are skipped (the feed may carry more kinds than this service reads).
   */
  async licenceEvents(after: string | null): Promise<LicenceEvents> {
    const answer = await this.exchange('GET', `licence-events${after === null ? '' : `?after=${encodeURIComponent(after)}`}`, null, undefined);
    const body = answer.body as { events?: unknown; cursor?: unknown; more?: unknown };
    if (answer.status !== 200 || !Array.isArray(body.events)) throw malformed(answer);
    const revocations: AuthorityRevocation[] = [];
    for (const ev of body.events as Array<Record<string, unknown>>) {
      if (typeof ev !== 'object' || ev === null || typeof ev.type !== 'string') throw malformed(answer);
      if (ev.type !== 'licence-revoked') continue;
      revocations.push({
        licenceId: ev.licenceNumber as string,
        reason: typeof ev.reasonCode === 'string' && typeof ev.reason === 'string' ? `${ev.reasonCode}: ${ev.reason}` : (ev.reason as string),
        revokedAt: ev.revokedAt as string,
      });
    }
    return checkedEvents({ revocations, cursor: body.cursor as string, more: body.more as boolean });
  }

  /**
   * One request to /cmls/v1/vendors/{vendorId}/{path}; resolves with a 200, 201 or 202 answer
   * whose body is a JSON object. Throws LicensingLinkError for no answer (connection, TLS,
   * timeout, 408, 429, 5xx) and an Error naming the status and the authority's error otherwise.
   */
  private exchange(method: 'PUT' | 'POST' | 'GET', path: string, idempotencyKey: string | null, payload: unknown): Promise<{ status: number; body: unknown }> {
    const url = new URL(`${this.base.pathname.replace(/\/+$/, '')}/cmls/v1/vendors/${encodeURIComponent(this.opts.vendorId)}/${path}`, this.base);
    const data = method === 'GET' ? Buffer.alloc(0) : Buffer.from(JSON.stringify(payload));
    const what = `${method} ${url.pathname}`;
    const headers: Record<string, string | number> = method === 'GET'
      ? { accept: 'application/json' }
      : { 'content-type': 'application/json', 'content-length': data.length, accept: 'application/json', 'idempotency-key': idempotencyKey ?? '' };
    return new Promise((resolve, reject) => {
      const req = request(url, { method, agent: this.agent, headers }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size <= ANSWER_MAX_BYTES) return void chunks.push(c);
          finish(new LicensingLinkError(`${what}: the answer exceeds ${ANSWER_MAX_BYTES} bytes`));
          req.destroy();
        });
        res.on('error', (e) => finish(new LicensingLinkError(`${what}: ${linkErrorText(e)}`, { cause: e })));
        res.on('close', () => { if (!res.complete) finish(new LicensingLinkError(`${what}: the answer was cut off`)); });
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown;
          try {
            body = JSON.parse(text);
          } catch {
            body = undefined;
          }
          if (status >= 500 || status === 408 || status === 429) return finish(new LicensingLinkError(`${what}: HTTP ${status}${errorText(body)}`));
          if (status !== 200 && status !== 201 && status !== 202) {
            const code = (body as { error?: { code?: unknown } } | undefined)?.error?.code;
            return finish(Object.assign(new Error(`${what}: HTTP ${status}${errorText(body)}`), { status, authorityCode: typeof code === 'string' ? code : undefined }));
          }
          const json = /^application\/json\b/i.test(res.headers['content-type'] ?? '');
          if (!json || typeof body !== 'object' || body === null || Array.isArray(body)) return finish(new Error(`${what}: the authority's answer does not fit the contract: HTTP ${status} without a JSON object`));
          finish(null, { status, body });
        });
      });
      const timer = setTimeout(() => {
        finish(new LicensingLinkError(`${what}: no answer within ${this.opts.timeoutMs} ms`));
        req.destroy();
      }, this.opts.timeoutMs);
      let done = false;
      const finish = (e: Error | null, v?: { status: number; body: unknown }) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (e) reject(e);
        else resolve(v as { status: number; body: unknown });
      };
      req.on('error', (e) => finish(new LicensingLinkError(`${what}: ${linkErrorText(e)}`, { cause: e })));
      req.end(data);
    });
  }
}

/** An answer with a success status that does not fit the API: no answer (the contract, docs/licensing.md). */
function malformed(answer: { status: number; body: unknown }): Error {
  return new Error(`the authority's answer does not fit the contract: HTTP ${answer.status} ${JSON.stringify(answer.body).slice(0, ERROR_TEXT_MAX)}`);
}

/** The authority's `{ "error": { "code", "message" } }`, shortened, for last_error. */
function errorText(body: unknown): string {
  const err = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  if (!err || typeof err !== 'object') return '';
  const text = [err.code, err.message].filter((v) => typeof v === 'string').join(': ');
  return text ? `: ${text.replace(/[\u0000-\u001f\u007f]/g, ' ').slice(0, ERROR_TEXT_MAX)}` : '';
}

/** A socket or TLS failure by its code (ECONNREFUSED, ERR_TLS_CERT_ALTNAME_INVALID, ...) and message. */
function linkErrorText(e: Error): string {
  const code = (e as NodeJS.ErrnoException).code;
  return code ? `${code}: ${e.message}` : e.message;
}
