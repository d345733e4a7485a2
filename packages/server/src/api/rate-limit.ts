import type { Request } from 'express';
import { vbiError } from '@vbi/core/errors';
import { DocumentedMiddleware, ERROR_SCHEMA_REF } from './openapi';

/**
 * Rate limiting for the authentication endpoints (registration, challenge, session): an exact
 * sliding window per key, in memory. At most `limit` requests per key in any `windowMs`;
 * the next one is 429 RATE_LIMITED with `Retry-After` (whole seconds until the oldest request
 * in the window leaves it). Memory is bounded: each key keeps at most `limit` timestamps, idle
 * keys are swept, and at most `maxKeys` keys are tracked (the least recently seen go first).
 *
 * Per process: behind a load balancer each server enforces its own window, so the effective
 * limit is `limit` × servers; good enough against password guessing, which the module's
 * verifier throttles as well.
 */
export interface RateLimitOptions {
  /** Requests allowed per key in any window. */
  limit: number;
  windowMs: number;
  /** The key of a request; default: client IP + '|' + meter id (path parameter or body field). */
  key?: (req: Request) => string;
  /** Milliseconds; inject a fake for deterministic tests. */
  clock?: () => number;
  /** Upper bound on tracked keys (default 100000). */
  maxKeys?: number;
}

/** The outcome of one attempt. */
export interface RateLimitDecision {
  allowed: boolean;
  /** Attempts left in the window after this one. */
  remaining: number;
  /** When refused: milliseconds until an attempt would be allowed. */
  retryAfterMs: number;
}

/** The default key: IP and meter id, so one client cannot lock out a meter from elsewhere, nor guess across meters fast. */
export function ipAndMeterKey(req: Request): string {
  const fromParams = (req.params as Record<string, unknown> | undefined)?.meterId;
  const body = req.body as Record<string, unknown> | undefined;
  const fromBody = body && typeof body === 'object' ? body.meterId : undefined;
  const meterId = typeof fromParams === 'string' ? fromParams : typeof fromBody === 'string' ? fromBody : '';
  return `${req.ip ?? req.socket.remoteAddress ?? ''}|${meterId}`;
}

/** A sliding-window limiter; `middleware` applies it to requests, `attempt` to anything else. */
export class RateLimiter {
  private readonly hits = new Map<string, number[]>();
  private readonly clock: () => number;
  private readonly maxKeys: number;
  private lastSweep: number;

  constructor(private readonly opts: RateLimitOptions) {
    if (!Number.isSafeInteger(opts.limit) || opts.limit < 1) throw new Error('rate limit: limit must be a positive integer');
    if (!(opts.windowMs > 0)) throw new Error('rate limit: windowMs must be positive');
    this.clock = opts.clock ?? Date.now;
    this.maxKeys = opts.maxKeys ?? 100_000;
    this.lastSweep = this.clock();
  }

  /** Counts one attempt for `key` and says whether it may proceed. Refused attempts are not counted. */
  attempt(key: string): RateLimitDecision {
    const now = this.clock();
    this.sweep(now);
    const since = now - this.opts.windowMs;
    const list = (this.hits.get(key) ?? []).filter((t) => t > since);
    // Re-insert to keep the map in least-recently-seen order for eviction.
    this.hits.delete(key);
    if (list.length >= this.opts.limit) {
      this.hits.set(key, list);
      return { allowed: false, remaining: 0, retryAfterMs: list[0] + this.opts.windowMs - now };
    }
    list.push(now);
    this.hits.set(key, list);
    while (this.hits.size > this.maxKeys) this.hits.delete(this.hits.keys().next().value as string);
    return { allowed: true, remaining: this.opts.limit - list.length, retryAfterMs: 0 };
  }

  /** Forgets a key (e.g. after a successful login, if the caller wants that policy). */
  reset(key: string): void {
    this.hits.delete(key);
  }

  /** Keys currently tracked (for tests and metrics). */
  get size(): number {
    return this.hits.size;
  }

  /** Express middleware: 429 RATE_LIMITED (`Retry-After` set by errorHandler) when over the limit. */
  middleware(): DocumentedMiddleware {
    const keyOf = this.opts.key ?? ipAndMeterKey;
    const mw: DocumentedMiddleware = (req, res, next) => {
      const d = this.attempt(keyOf(req));
      res.setHeader('RateLimit-Limit', String(this.opts.limit));
      res.setHeader('RateLimit-Remaining', String(d.remaining));
      if (!d.allowed) {
        const retryAfterSeconds = Math.max(1, Math.ceil(d.retryAfterMs / 1000));
        throw vbiError('RATE_LIMITED', `too many attempts; retry in ${retryAfterSeconds} s`, { retryAfterSeconds });
      }
      next();
    };
    mw.openapi = {
      responses: {
        429: {
          description: 'RATE_LIMITED',
          schema: ERROR_SCHEMA_REF,
          headers: { 'Retry-After': { description: 'seconds to wait', schema: { type: 'integer', minimum: 1 } } },
        },
      },
    };
    return mw;
  }

  /** Drops keys with no attempt inside the window, at most once per window. */
  private sweep(now: number): void {
    if (now - this.lastSweep < this.opts.windowMs) return;
    this.lastSweep = now;
    const since = now - this.opts.windowMs;
    for (const [k, list] of this.hits) if (list[list.length - 1] <= since) this.hits.delete(k);
  }
}

/** Shorthand: `rateLimit({ limit: 5, windowMs: 60_000 })` → the middleware. */
export function rateLimit(opts: RateLimitOptions): DocumentedMiddleware {
  return new RateLimiter(opts).middleware();
}
