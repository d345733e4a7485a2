import type { ErrorRequestHandler, RequestHandler } from 'express';
import { ERROR_CODES, ErrorCode, VbiError, vbiError } from '@vbi/core/errors';

/**
 * The wire shape of every error answer. `code` is stable (packages/core/src/errors.ts, docs/errors.md);
 * `message` is for people; `details` is only sent for user errors.
 */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; details?: Record<string, unknown> };
}

/** Where unexpected errors and internal (5xx) errors are written; stderr unless injected. */
export type ErrorLog = (line: string) => void;

const stderrLog: ErrorLog = (line) => process.stderr.write(`${line}\n`);

/**
 * The errors body-parser raises (express.json()) carry a `type` and a `status`; they are the
 * client's fault and are mapped to our own codes instead of leaking the parser's wording.
 */
interface ParserError {
  type: string;
  status: number;
  expose?: boolean;
  message: string;
}

function isParserError(e: unknown): e is ParserError {
  const p = e as Partial<ParserError> | null;
  return typeof p === 'object' && p !== null && typeof p.type === 'string' && typeof p.status === 'number';
}

/** Maps anything thrown or passed to next() onto a VbiError; undefined when it is unexpected. */
export function vbiErrorOf(e: unknown): VbiError | undefined {
  if (e instanceof VbiError) return e;
  if (isConnectionLoss(e)) return vbiError('DATABASE_UNAVAILABLE', `database connection: ${(e as Error).message}`);
  // express's router could not percent-decode a path parameter (%zz, %FF, a lone %)
  if (e instanceof URIError) return vbiError('BAD_REQUEST', 'a path parameter is not valid percent-encoding');
  if (!isParserError(e)) return undefined;
  if (e.type === 'encoding.unsupported') return vbiError('CONTENT_ENCODING_UNSUPPORTED');
  if (e.type === 'entity.parse.failed') return vbiError('BAD_JSON');
  if (e.status === 413) return vbiError('BODY_TOO_LARGE');
  if (e.status === 415) return vbiError('UNSUPPORTED_MEDIA_TYPE', `request body: ${e.message.toLowerCase()}`);
  // request.aborted, request.size.invalid, ...: the client's fault, nothing more to say.
  if (e.status >= 400 && e.status < 500 && e.expose) return vbiError('BAD_REQUEST', `request body: ${e.message.toLowerCase()}`);
  return undefined;
}

/** SQLSTATE classes and codes of a server going away or not accepting connections yet. */
const CONNECTION_SQLSTATES = /^(08...|57P01|57P02|57P03)$/;
const CONNECTION_ERRNOS = ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH'];

/**
 * True for a lost or refused PostgreSQL connection (the server restarted, crashed or is still
 * recovering): the request failed as a whole and may be retried; the pool reconnects by itself.
 */
export function isConnectionLoss(e: unknown): boolean {
  const x = e as { code?: unknown; message?: unknown } | null;
  if (!x || typeof x !== 'object') return false;
  if (typeof x.code === 'string' && (CONNECTION_SQLSTATES.test(x.code) || CONNECTION_ERRNOS.includes(x.code))) return true;
  const m = typeof x.message === 'string' ? x.message : '';
  return /Connection terminated|connection error and is not queryable|Knex: Timeout acquiring a connection|Transaction query already complete/.test(m);
}

/**
 * The JSON body for an error. Internal errors carry neither details nor their own message (they
 * may name keys, rows or token codes): the registry's text only; the full message goes to the log.
 */
export function errorBody(e: VbiError): ErrorBody {
  return {
    error: {
      code: e.code,
      message: e.kind === 'internal' ? ERROR_CODES[e.code].text : e.message,
      ...(e.kind === 'user' && e.details ? { details: e.details } : {}),
    },
  };
}

/**
 * The last middleware of the app: VbiError → its registry status and `{ error: { code, message,
 * details? } }`; body-parser errors → BAD_JSON / BODY_TOO_LARGE / UNSUPPORTED_MEDIA_TYPE;
 * anything else → 500 INTERNAL with a fixed message, the stack going to `log` only.
 * Internal VbiErrors are logged too (they are alarms). A response already under way is
 * handed back to express, which closes the connection.
 */
export function errorHandler(opts: { log?: ErrorLog } = {}): ErrorRequestHandler {
  const log = opts.log ?? stderrLog;
  return (err, req, res, next) => {
    if (res.headersSent) {
      next(err);
      return;
    }
    let e = vbiErrorOf(err);
    if (!e) {
      log(`${req.method} ${req.originalUrl}: unexpected error: ${(err as Error)?.stack ?? String(err)}`);
      e = vbiError('INTERNAL');
    } else if (e.kind === 'internal') {
      log(`${req.method} ${req.originalUrl}: ${e.code}: ${e.message}${e.details ? ` ${JSON.stringify(e.details)}` : ''}`);
    }
    if (e.code === 'RATE_LIMITED' && typeof e.details?.retryAfterSeconds === 'number') {
      res.setHeader('Retry-After', String(e.details.retryAfterSeconds));
    }
    if (['DATABASE_UNAVAILABLE', 'SHARD_UNAVAILABLE', 'SHARD_LOST'].includes(e.code)) res.setHeader('Retry-After', '1');
    res.status(e.status).json(errorBody(e));
  };
}

/** Mounted after every route: whatever reached it matched nothing → 404 NOT_FOUND. */
export function notFoundHandler(): RequestHandler {
  return (req, _res, next) => {
    next(vbiError('NOT_FOUND', `no route for ${req.method} ${req.path}`));
  };
}
