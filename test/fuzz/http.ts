import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';

/**
 * The fuzzer's HTTP client: node:http directly (not fetch), so a request can carry bytes that
 * are not valid UTF-8, any Content-Type or Content-Encoding, oversized headers and raw
 * percent-encoding in the path, exactly as written. One connection per request (no keep-alive):
 * an answer that closes the connection (413, 431) cannot poison the next request.
 */
export interface RawRequest {
  method: string;
  /** Path and query as sent on the request line (already percent-encoded; ASCII only). */
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
}

export interface RawAnswer {
  /** HTTP status; 0 when no answer came (connection reset, timeout). */
  status: number;
  headers: IncomingHttpHeaders;
  /** The body bytes (at most MAX_BODY) as UTF-8 text. */
  text: string;
  /** Set when there was no HTTP answer. */
  error?: string;
  ms: number;
}

const MAX_BODY = 4 * 1024 * 1024;

export function sendRaw(baseUrl: string, req: RawRequest, timeoutMs = 20_000): Promise<RawAnswer> {
  const base = new URL(baseUrl);
  const started = Date.now();
  return new Promise((resolve) => {
    let done = false;
    const finish = (a: Omit<RawAnswer, 'ms'>) => {
      if (done) return;
      done = true;
      resolve({ ...a, ms: Date.now() - started });
    };
    const headers: Record<string, string> = { ...req.headers };
    if (req.body !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-length')) {
      headers['content-length'] = String(req.body.length);
    }
    let r;
    try {
      r = httpRequest({
        host: base.hostname, port: base.port, method: req.method, path: req.path, headers, agent: false,
        // the server's own limit (16 KiB by default) is what is being tested, not the client's
        maxHeaderSize: 1024 * 1024,
      });
    } catch (e) {
      // node refused to send it (e.g. an illegal character in a header): a fuzzer bug, reported as such
      finish({ status: -1, headers: {}, text: '', error: `client refused the request: ${(e as Error).message}` });
      return;
    }
    const timer = setTimeout(() => {
      finish({ status: 0, headers: {}, text: '', error: `no answer within ${timeoutMs} ms` });
      r.destroy();
    }, timeoutMs);
    r.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= MAX_BODY) chunks.push(c);
      });
      const end = () => {
        clearTimeout(timer);
        finish({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') });
      };
      res.on('end', end);
      // a body cut short after the head arrived: keep what came (the status is what matters)
      res.on('error', end);
      res.on('aborted', end);
    });
    r.on('error', (e) => {
      clearTimeout(timer);
      finish({ status: 0, headers: {}, text: '', error: `${(e as NodeJS.ErrnoException).code ?? ''} ${e.message}`.trim() });
    });
    if (req.body !== undefined) r.end(req.body);
    else r.end();
  });
}

/** JSON.parse that returns undefined instead of throwing. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
