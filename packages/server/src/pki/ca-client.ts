import { vbiError } from '@vbi/core/errors';
import {
  CA_REQUEST_PATH, CertificateRequestMessage, CertificateResponseMessage, decodeResponse, encodeRequest,
} from './ca-protocol';

/** Where MeterGen sends certificate requests: the dev/test CA or the real postal CA. */
export interface CaClient {
  requestCertificate(req: CertificateRequestMessage): Promise<CertificateResponseMessage>;
}

/**
 * The CA over HTTP(S) at `baseUrl` (CA_URL). Assumes nothing about the CA beyond the protocol
 * in ca-protocol.ts: whatever comes back is verified by the caller against its own trust
 * anchor. A refusal (4xx) becomes CA_REQUEST_REFUSED with the CA's message; a network error,
 * timeout or 5xx becomes CA_UNAVAILABLE.
 */
export class HttpCaClient implements CaClient {
  constructor(private readonly baseUrl: string, private readonly timeoutMs = 15_000) {}

  async requestCertificate(req: CertificateRequestMessage): Promise<CertificateResponseMessage> {
    const url = new URL(CA_REQUEST_PATH, this.baseUrl).toString();
    let res: Response;
    try {
      res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(encodeRequest(req)),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (e) {
      throw vbiError('CA_UNAVAILABLE', `CA at ${url} not reachable: ${(e as Error).message}`);
    }
    const body = await res.json().catch(() => null) as { code?: unknown; message?: unknown } | null;
    if (res.status >= 400 && res.status < 500) {
      const why = typeof body?.message === 'string' ? body.message : `HTTP ${res.status}`;
      throw vbiError('CA_REQUEST_REFUSED', `CA refused the request: ${why}`, { caStatus: res.status, caCode: body?.code });
    }
    if (res.status !== 201 && res.status !== 200) throw vbiError('CA_UNAVAILABLE', `CA at ${url} answered HTTP ${res.status}`);
    return decodeResponse(body);
  }
}
