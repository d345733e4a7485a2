import type { Request, RequestHandler } from 'express';
import { vbiError } from '@vbi/core/errors';
import { shardOfMeter } from '../config/shard';

/**
 * A request for a meter of another shard (packages/server/src/config/shard.ts) is answered with a 307 to the
 * process that serves that shard (method and body kept; the SDK's fetch follows it), or
 * SHARD_UNAVAILABLE (503, retryable) while no process has claimed it. So is one for this
 * process's own shard once another process took it over (SHARD_LOST until the new owner claims
 * it). Everything else is served here. The meter is the one the request names: `meterId` in the
 * JSON body (every operational envelope, heartbeats) or in the path (/v1/registrations/:meterId/…,
 * /v1/operator/meters/:meterId/…).
 */
export function shardRedirect(opts: ShardRouting): RequestHandler {
  return (req, res, next) => {
    const meterId = meterOfRequest(req);
    if (meterId === undefined) return next();
    const shard = shardOfMeter(meterId);
    const lost = shard === opts.mine ? opts.lost() : null;
    if (shard === opts.mine && lost === null) return next();
    opts.ownerUrl(shard).then((url) => {
      // this process's own shard, taken over by another that has not yet claimed it
      if (lost !== null && (url === null || url === opts.self())) return next(vbiError('SHARD_LOST', lost));
      if (!url) return next(vbiError('SHARD_UNAVAILABLE', `no process serves shard ${shard} (meter ${meterId}) now`, { shard }));
      res.redirect(307, `${url}${req.originalUrl}`);
    }, next);
  };
}

/** What shardRedirect needs to know of this process and the others. */
export interface ShardRouting {
  /** The shard this process serves. */
  mine: number;
  /** Why this process serves its shard no more (another took it over: Ledger.lostShard), or null. */
  lost(): string | null;
  /** This process's own URL in the owner directory. */
  self(): string;
  /** The URL of the process that serves `shard` now (packages/server/src/ledger/shard-owners.ts), or null. */
  ownerUrl(shard: number): Promise<string | null>;
}

const METER_PATH = /^\/v1\/(?:registrations|operator\/meters)\/([^/?]+)(?:[/?]|$)/;

/** The meter a request names, if any. */
export function meterOfRequest(req: Request): string | undefined {
  return meterNamed(req.path, req.body);
}

/**
 * The meter a request names: `meterId` in its JSON body, else the one in its path; undefined when
 * it names none. `path` may carry a query string.
 */
export function meterNamed(path: string, body: unknown): string | undefined {
  if (body && typeof body === 'object' && typeof (body as { meterId?: unknown }).meterId === 'string') return (body as { meterId: string }).meterId;
  const m = METER_PATH.exec(path);
  if (!m) return undefined;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return undefined; // not a meter id: the route's own validation answers
  }
}
