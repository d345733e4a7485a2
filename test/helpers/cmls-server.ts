import { createServer, Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRootCa, issueTlsCertificate, TestCa } from './throwaway-ca';
import { CmlsHttpOptions } from '@vbi/server/licensing/cmls-http-authority';

/** The certificates of one test: the authority's CA and server, the vendor's CA and client, and a stranger's CA with both kinds. */
export interface CmlsPki {
  dir: string;
  authorityCa: TestCa;
  server: { certPath: string; keyPath: string };
  vendorCa: TestCa;
  vendorClient: { certPath: string; keyPath: string };
  /** A server and a client certificate from a CA neither side trusts. */
  rogueServer: { certPath: string; keyPath: string };
  rogueClient: { certPath: string; keyPath: string };
}

export function cmlsPki(): CmlsPki {
  const dir = mkdtempSync(join(process.env.VBI_TEST_ROOT as string, 'cmls-'));
  const authorityCa = createRootCa(dir, 'Test CMLS Root');
  const vendorCa = createRootCa(dir, 'Test Vendor Client Root');
  const rogueCa = createRootCa(dir, 'Test Rogue Root');
  return {
    dir, authorityCa, vendorCa,
    server: issueTlsCertificate(dir, authorityCa, { name: 'cmls server', use: 'server' }),
    vendorClient: issueTlsCertificate(dir, vendorCa, { name: 'VENDOR-7', use: 'client' }),
    rogueServer: issueTlsCertificate(dir, rogueCa, { name: 'rogue server', use: 'server' }),
    rogueClient: issueTlsCertificate(dir, rogueCa, { name: 'rogue client', use: 'client' }),
  };
}

/** The adapter's options for a server of this PKI (the vendor's client certificate, the authority's CA). */
export function adapterOptions(pki: CmlsPki, url: string, over: Partial<CmlsHttpOptions> = {}): CmlsHttpOptions {
  return {
    url, vendorId: 'VENDOR-7', timeoutMs: 2_000,
    clientCert: readFileSync(pki.vendorClient.certPath), clientKey: readFileSync(pki.vendorClient.keyPath), ca: readFileSync(pki.authorityCa.certPath),
    ...over,
  };
}

/** What the test authority does with the next requests, before its normal answer. */
export type Fault =
  | { kind: 'status'; status: number; body?: unknown }
  | { kind: 'hang' }
  /** A success status with this raw body and content type (a malformed answer). */
  | { kind: 'raw'; status: number; body: string; contentType?: string };

/** A request as the test authority received it. */
export interface Received {
  method: string;
  path: string;
  idempotencyKey: string | undefined;
  clientCn: string | undefined;
  body: any;
}

/**
 * The postal licensing authority's HTTP API as docs/licensing.md describes it, over HTTPS with
 * mutual TLS (client certificates of the vendor's CA only). Applications are kept by request id:
 * asked again with the same body it answers the same (200), with another it answers 409.
 * Licensing ZIP 00000 is refused, 99999 stays under review, the rest is approved with licence
 * number `PA/<zip>/<request id>` (a '/' in it, as the allowed form permits). Revocations are
 * recorded once per licence; an unknown licence is 404. The authority's own licence events are
 * what the test puts in `events`, two per page, the cursor `c<events read>`.
 */
export class TestCmlsServer {
  readonly received: Received[] = [];
  readonly applications = new Map<string, { body: string; answer: { status: number; body: unknown } }>();
  readonly revocations = new Map<string, { reason: string; revokedAt: string; idempotencyKey: string | undefined }>();
  /** The authority's own licence events (its feed), oldest first, as the API answers them. */
  readonly events: Array<Record<string, unknown>> = [];
  /** Faults answered to the next requests, in order, one each. */
  readonly faults: Fault[] = [];
  private readonly sockets = new Set<Socket>();
  private readonly hung = new Set<ServerResponse>();
  url = '';

  private constructor(private readonly server: Server) {}

  static async start(pki: CmlsPki, opts: { rogue?: boolean } = {}): Promise<TestCmlsServer> {
    const cert = opts.rogue ? pki.rogueServer : pki.server;
    const server = createServer({
      cert: readFileSync(cert.certPath), key: readFileSync(cert.keyPath), ca: readFileSync(pki.vendorCa.certPath), requestCert: true, rejectUnauthorized: true,
    });
    const s = new TestCmlsServer(server);
    server.on('connection', (sock: Socket) => {
      s.sockets.add(sock);
      sock.on('close', () => s.sockets.delete(sock));
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => s.handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    s.url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return s;
  }

  /** The requests that reached the API (after the TLS handshake). */
  count(): number {
    return this.received.length;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const path = req.url ?? '';
      const idempotencyKey = req.headers['idempotency-key'] as string | undefined;
      const cn = (req.socket as TLSSocket).getPeerCertificate().subject?.CN;
      let body: any;
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
      this.received.push({ method: req.method ?? '', path, idempotencyKey, clientCn: typeof cn === 'string' ? cn : undefined, body });
      const fault = this.faults.shift();
      if (fault?.kind === 'hang') return void this.hung.add(res);
      if (fault?.kind === 'raw') return void res.writeHead(fault.status, { 'content-type': fault.contentType ?? 'application/json' }).end(fault.body);
      if (fault?.kind === 'status') return this.send(res, fault.status, fault.body ?? { error: { code: 'FAULT', message: `test fault ${fault.status}` } });
      const answer = this.answer(req.method ?? '', decodeURI(path), idempotencyKey, text, body);
      this.send(res, answer.status, answer.body);
    });
  }

  private answer(method: string, path: string, key: string | undefined, text: string, body: any): { status: number; body: unknown } {
    const app = /^\/cmls\/v1\/vendors\/VENDOR-7\/licence-applications\/(\d+)$/.exec(path);
    if (method === 'PUT' && app) {
      if (key !== `VENDOR-7-${app[1]}`) return error(400, 'IDEMPOTENCY_KEY', 'the Idempotency-Key is not VENDOR-7-{requestId}');
      const known = this.applications.get(app[1]);
      if (known) return known.body === text ? { ...known.answer, status: known.answer.status === 201 ? 200 : known.answer.status } : error(409, 'CONFLICT', 'another application under this request id');
      if (body?.form !== '3601-A' || typeof body?.licensingPostOffice?.zip !== 'string') return error(400, 'INVALID', 'not a 3601-A application');
      const zip = body.licensingPostOffice.zip as string;
      const answer = zip === '00000' ? { status: 200, body: { status: 'refused', reasonCode: 'ZIP_NOT_SERVED', reason: 'no post office has this ZIP' } }
        : zip === '99999' ? { status: 202, body: { status: 'under-review', caseNumber: `CASE-${app[1]}`, retryAfterSeconds: 3600 } }
          : { status: 201, body: { status: 'approved', licenceNumber: `PA/${zip}/${app[1]}`, approvedAt: new Date().toISOString() } };
      this.applications.set(app[1], { body: text, answer });
      return answer;
    }
    const rev = /^\/cmls\/v1\/vendors\/VENDOR-7\/licences\/(.+)\/revocations$/.exec(path);
    if (method === 'POST' && rev) {
      const licence = decodeURIComponent(rev[1]);
      const granted = [...this.applications.values()].some((a) => (a.answer.body as { licenceNumber?: string }).licenceNumber === licence);
      if (!granted) return error(404, 'UNKNOWN_LICENCE', 'no such licence');
      if (typeof body?.reason !== 'string' || typeof body?.revokedAt !== 'string') return error(400, 'INVALID', 'reason and revokedAt are required');
      const known = this.revocations.has(licence);
      if (!known) this.revocations.set(licence, { reason: body.reason, revokedAt: body.revokedAt, idempotencyKey: key });
      return { status: known ? 200 : 201, body: { status: 'revoked', licenceNumber: licence } };
    }
    const feed = /^\/cmls\/v1\/vendors\/VENDOR-7\/licence-events(?:\?after=(.*))?$/.exec(path);
    if (method === 'GET' && feed) {
      const from = feed[1] === undefined ? 0 : /^c\d+$/.test(feed[1]) ? Number(feed[1].slice(1)) : -1;
      if (from < 0 || from > this.events.length) return error(400, 'CURSOR', 'no such cursor');
      const page = this.events.slice(from, from + 2);
      return { status: 200, body: { events: page, cursor: `c${from + page.length}`, more: from + page.length < this.events.length } };
    }
    return error(404, 'NOT_FOUND', 'no such resource');
  }

  private send(res: ServerResponse, status: number, body: unknown): void {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  }

  async close(): Promise<void> {
    for (const res of this.hung) res.destroy();
    for (const sock of this.sockets) sock.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

function error(status: number, code: string, message: string): { status: number; body: unknown } {
  return { status, body: { error: { code, message } } };
}
