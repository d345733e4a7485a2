import { ERROR_CODES, ErrorCode, vbiError } from '@vbi/core/errors';

/** The fetch the client uses; injectable for tests. */
export type FetchFn = (input: string, init: RequestInit) => Promise<Response>;

/** How the client reaches the service. */
export interface HttpClientOptions {
  /** e.g. http://127.0.0.1:8080 (paths are appended, so no trailing /v1). */
  baseUrl: string;
  fetch?: FetchFn;
  /** Attempts of an idempotent request when the network fails; default 3. */
  attempts?: number;
  /** Delay before the second attempt, doubled for each later one; default 500 ms. */
  retryDelayMs?: number;
  /** Per attempt; default 120 s (a print batch is answered after its last item). */
  timeoutMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

/** One request. */
export interface HttpRequest {
  method: 'GET' | 'POST';
  /** Absolute path, e.g. /v1/balance. */
  path: string;
  body?: unknown;
  /** Sent as Idempotency-Key; makes a POST safe to retry after a network failure. */
  idempotencyKey?: string;
  /** A POST that changes nothing the client could lose by sending it twice. */
  safeToRepeat?: boolean;
}

/**
 * An error answer whose code this client does not know (a newer service), or an answer that is
 * not the service's JSON error shape. `code` is the service's code, or HTTP_<status>.
 */
export class ServiceError extends Error {
  constructor(readonly code: string, message: string, readonly status: number, readonly details?: Record<string, unknown>) {
    super(message);
    this.name = 'ServiceError';
  }
}

/** The service could not be reached (after the retries the request allowed). */
export class NetworkError extends Error {
  readonly code = 'NETWORK_ERROR';
  constructor(message: string, override readonly cause?: unknown) {
    super(message);
    this.name = 'NetworkError';
  }
}

/**
 * JSON over HTTP to the service. Error answers `{ error: { code, message, details } }` become a
 * VbiError with that code (packages/core/src/errors.ts) or a ServiceError for a code this build does not
 * know. Only network failures are retried, and only for requests that are safe to repeat: GET,
 * and POSTs carrying an Idempotency-Key (the same key and the same bytes on every attempt, so
 * the service answers a repeat with its first answer and never runs the command twice).
 */
export class HttpClient {
  readonly baseUrl: string;
  private readonly fetchFn: FetchFn;
  private readonly attempts: number;
  private readonly retryDelayMs: number;
  private readonly timeoutMs: number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(opts: HttpClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.fetchFn = opts.fetch ?? ((input, init) => fetch(input, init));
    this.attempts = Math.max(1, opts.attempts ?? 3);
    this.retryDelayMs = opts.retryDelayMs ?? 500;
    this.timeoutMs = opts.timeoutMs ?? 120_000;
    this.sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  }

  /** POST `body` as JSON; the parsed JSON answer. */
  /** `safeToRepeat`: a POST that may be sent again after a network failure without a key (resync). */
  post<T>(path: string, body: unknown, opts: { idempotencyKey?: string; safeToRepeat?: boolean } = {}): Promise<T> {
    return this.request<T>({ method: 'POST', path, body, idempotencyKey: opts.idempotencyKey, safeToRepeat: opts.safeToRepeat });
  }

  /** GET; the parsed JSON answer. */
  get<T>(path: string): Promise<T> {
    return this.request<T>({ method: 'GET', path });
  }

  async request<T>(req: HttpRequest): Promise<T> {
    const retryable = req.method === 'GET' || req.idempotencyKey !== undefined || req.safeToRepeat === true;
    const attempts = retryable ? this.attempts : 1;
    // Serialised once: a retry must send exactly the same bytes (idempotency request hash).
    const body = req.body === undefined ? undefined : JSON.stringify(req.body);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (req.idempotencyKey !== undefined) headers['idempotency-key'] = req.idempotencyKey;
    const url = `${this.baseUrl}${req.path}`;
    let lastFailure: unknown;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (attempt > 1) await this.sleep(this.retryDelayMs * 2 ** (attempt - 2));
      let status: number;
      let text: string;
      try {
        const res = await this.fetchFn(url, { method: req.method, headers, body, signal: AbortSignal.timeout(this.timeoutMs) });
        status = res.status;
        text = await res.text();
      } catch (e) {
        lastFailure = e;
        continue;
      }
      return parseAnswer<T>(status, text, `${req.method} ${req.path}`);
    }
    const why = lastFailure instanceof Error ? describeNetworkFailure(lastFailure) : String(lastFailure);
    throw new NetworkError(`${req.method} ${url} failed${attempts > 1 ? ` after ${attempts} attempts` : ''}: ${why}`, lastFailure);
  }
}

function parseAnswer<T>(status: number, text: string, what: string): T {
  let json: unknown;
  try {
    json = text.length ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (status >= 200 && status < 300) {
    if (json === undefined) throw new ServiceError(`HTTP_${status}`, `${what}: answer is not JSON`, status);
    return json as T;
  }
  const err = (json as { error?: { code?: unknown; message?: unknown; details?: unknown } } | undefined)?.error;
  if (!err || typeof err.code !== 'string') {
    throw new ServiceError(`HTTP_${status}`, `${what}: HTTP ${status}${text ? ` ${text.slice(0, 200)}` : ''}`, status);
  }
  const message = typeof err.message === 'string' ? err.message : err.code;
  const details = err.details && typeof err.details === 'object' ? (err.details as Record<string, unknown>) : undefined;
  if (Object.hasOwn(ERROR_CODES, err.code)) throw vbiError(err.code as ErrorCode, message, details);
  throw new ServiceError(err.code, message, status, details);
}

function describeNetworkFailure(e: Error): string {
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  if (e.name === 'TimeoutError') return 'no answer in time';
  return cause?.code ?? cause?.message ?? e.message;
}
