import { createHash, randomBytes } from 'node:crypto';
import type { Request, Response } from 'express';
import type { Knex } from 'knex';
import { canonicalJson as protocolCanonicalJson } from '@vbi/core/protocol/canonical-json';
import { vbiError } from '@vbi/core/errors';
import { deleteKeysBefore, findKey, insertKeyIfAbsent, recordKeyAnswer, releaseKey, takeOverKey } from '../db/repositories/idempotency-keys';
import type { ErrorLog } from './http-errors';
import type { IdempotencyContext } from '../mailer/idempotency-context';

export type { IdempotencyContext };
import { DocumentedMiddleware, ERROR_SCHEMA_REF } from './openapi';

/**
 * Idempotency keys for the commands that move money or print value (purchase, print,
 * correction). A client that lost the answer retries with the same `Idempotency-Key` header and
 * gets the stored answer back (same status, header `Idempotent-Replay: true`); the handler never
 * runs twice at the same time. Rows live in PostgreSQL (packages/server/sql/0020_idempotency.sql,
 * packages/server/sql/0080_recovery.sql), so this holds across processes and restarts.
 *
 * Per (scope, key): the first request INSERTs an 'in_progress' row owned by this process's
 * instance id (ON CONFLICT DO NOTHING: exactly one concurrent request wins) and runs; its answer
 * is stored before it is sent. A 2xx-4xx answer (a 4xx VbiError included) is stored and
 * replayed. A 5xx or unexpected error releases the row (owner NULL, still 'in_progress').
 * A retry that finds the row 'in_progress' with no live owner — a 5xx, or a process that died —
 * takes it over and runs the handler again: **handlers behind this middleware must resume**
 * from what their earlier run committed (`res.locals.idempotency` tells them the key and since
 * when it exists) and never repeat a committed effect. The same key with another request is 409
 * IDEMPOTENCY_KEY_REUSED; a duplicate while a live process still runs it is 409
 * IDEMPOTENCY_IN_PROGRESS.
 *
 * Handlers behind this middleware must answer with res.json() (or return a value through
 * defineRoute): only JSON answers can be replayed. A non-JSON answer is recorded with its
 * status and an empty body.
 */
export interface IdempotencyOptions {
  db: Knex;
  /**
   * The authenticated meter or account id: authenticates the request (or fails it) and names
   * whose keys these are, so no stranger can reserve a key in someone else's scope.
   */
  scope: (req: Request) => string | Promise<string>;
  /** Where failures to record an answer are logged (stderr unless injected). */
  log?: ErrorLog;
  /** This process's instance id (32 hex), recorded as the owner of the requests it runs; a random one if not given. */
  owner?: string;
  /**
   * Whether the process with that instance id still lives (Service.instanceAlive). Without it,
   * every owner counts as alive: only rows released by a 5xx are taken over.
   */
  ownerAlive?: (owner: string) => Promise<boolean>;
}


/** The context the middleware left for the handler, or undefined without an Idempotency-Key. */
export function idempotencyContext(res: Response): IdempotencyContext | undefined {
  return res.locals.idempotency as IdempotencyContext | undefined;
}

/** Header names, as the IETF draft "The Idempotency-Key HTTP Header Field" spells them. */
export const IDEMPOTENCY_HEADER = 'Idempotency-Key';
export const REPLAY_HEADER = 'Idempotent-Replay';

/** 1 to 128 printable ASCII characters (space to tilde). */
export const IDEMPOTENCY_KEY_PATTERN = /^[\x20-\x7E]{1,128}$/;

/** Recording an answer again after the database failed: every second, for up to 10 minutes. */
const RECORD_RETRY_MS = 1_000;
const RECORD_RETRIES = 600;

/**
 * JSON with object keys sorted at every level (the protocol's canonical JSON): two bodies that
 * differ only in key order or whitespace hash alike. Part of the stored request_hash: changing it
 * makes every stored key look reused, so only change it together with a purge.
 */
export function canonicalJson(value: unknown): string {
  return value === undefined ? '' : protocolCanonicalJson(value);
}

/** SHA-256 over method, path, query and canonical body: what "the same request" means. */
export function requestHash(req: Pick<Request, 'method' | 'originalUrl' | 'query' | 'body'>): Buffer {
  const path = req.originalUrl.split('?')[0];
  return createHash('sha256')
    .update(`${req.method}\n${path}\n${canonicalJson(req.query)}\n${canonicalJson(req.body)}`)
    .digest();
}

/**
 * The middleware. Mount it after authentication and validation (defineRoute's `middleware`),
 * so invalid requests never reserve a key.
 */
export function idempotency(opts: IdempotencyOptions): DocumentedMiddleware {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const db = opts.db;
  const owner = opts.owner ?? randomBytes(16).toString('hex');
  // Requests this middleware runs now. A row owned by this process but not in here was left
  // behind when recording its answer failed (the database went away): a retry takes it over.
  const running = new Set<string>();

  const middleware: DocumentedMiddleware = async (req, res, next) => {
    const key = req.get(IDEMPOTENCY_HEADER);
    if (key === undefined || !IDEMPOTENCY_KEY_PATTERN.test(key)) throw vbiError('IDEMPOTENCY_KEY_REQUIRED');
    const scope = await opts.scope(req);
    if (typeof scope !== 'string' || scope.length === 0) {
      throw new Error('idempotency: empty scope (mount the middleware after authentication)');
    }
    const hash = requestHash(req);
    // A few rounds: a row may change between our INSERT and SELECT (answered, released, taken
    // over by another retry); then we look again.
    for (let round = 0; round < 4; round++) {
      const run = randomBytes(16).toString('hex');
      const inserted = await insertKeyIfAbsent(db, { scope, key, requestHash: hash, owner, run });
      const id = `${scope}\n${key}`;
      if (inserted.length === 1) {
        res.locals.idempotency = { scope, key, since: inserted[0].created_at, resumed: false } satisfies IdempotencyContext;
        running.add(id);
        recordAnswer(res, { db, scope, key, run, log, done: () => running.delete(id) });
        next();
        return;
      }
      const row = await findKey(db, scope, key);
      if (!row) continue;
      if (!row.request_hash.equals(hash)) {
        throw vbiError('IDEMPOTENCY_KEY_REUSED', `Idempotency-Key '${key}' was already used with a different request`);
      }
      if (row.state === 'in_progress') {
        const alive = row.owner === null ? false
          : row.owner === owner ? running.has(id)
            : !opts.ownerAlive || (await opts.ownerAlive(row.owner));
        if (alive) throw vbiError('IDEMPOTENCY_IN_PROGRESS');
        // Its process died or its run failed: take the row over and resume the request.
        const taken = await takeOverKey(db, { scope, key, previousOwner: row.owner, owner, run });
        if (taken !== 1 || running.has(id)) continue;
        res.locals.idempotency = { scope, key, since: row.created_at, resumed: true } satisfies IdempotencyContext;
        running.add(id);
        recordAnswer(res, { db, scope, key, run, log, done: () => running.delete(id) });
        next();
        return;
      }
      res.setHeader(REPLAY_HEADER, 'true');
      res.status(row.status as number);
      if (row.response === null) res.end();
      else res.json(row.response);
      return;
    }
    throw vbiError('IDEMPOTENCY_IN_PROGRESS');
  };
  middleware.openapi = {
    parameters: [
      {
        name: IDEMPOTENCY_HEADER,
        in: 'header',
        required: true,
        description: 'client-chosen key, unique per request; a retry with the same key and body replays the first answer (with Idempotent-Replay: true)',
        schema: { type: 'string', pattern: IDEMPOTENCY_KEY_PATTERN.source },
      },
    ],
    responses: { 409: { description: 'IDEMPOTENCY_KEY_REUSED or IDEMPOTENCY_IN_PROGRESS', schema: ERROR_SCHEMA_REF } },
  };
  return middleware;
}

/**
 * Intercepts res.json: the answer is written to the row first and sent afterwards, so a retry
 * that arrives after the client saw the answer always finds it. 5xx answers (the error
 * handler's too) release the row instead (owner NULL): the next retry resumes the request.
 * A row a handler already answered inside its own transaction (state 'done') is left as it is.
 * If recording fails the answer is still sent and the key stays in_progress under this process,
 * which no longer runs it: the next retry takes it over and resumes. Every run has its own run
 * id; recording and releasing touch the row only while it is still that run's.
 */
function recordAnswer(res: Response, ctx: { db: Knex; scope: string; key: string; run: string; log: ErrorLog; done: () => void }): void {
  // only while the row is still this run's: a retry (here or elsewhere) may have taken it over,
  // and a delayed release must not clear that retry's ownership
  const run = { scope: ctx.scope, key: ctx.key, run: ctx.run };
  const settle = (status: number, body: unknown): Promise<unknown> =>
    status >= 500
      ? releaseKey(ctx.db, run)
      : recordKeyAnswer(ctx.db, run, status, body === undefined ? null : JSON.stringify(body));
  const failed = (e: unknown) => ctx.log(`idempotency: could not record the answer for key '${ctx.key}' of '${ctx.scope}': ${(e as Error)?.message ?? e}`);

  // The database may be away for a moment (a restart): an answer that could not be recorded is
  // recorded again in the background, so a key whose answer the client received does not stay
  // in progress; a 5xx is released the same way.
  const later = (status: number, body: unknown, attempt = 1): void => {
    if (attempt > RECORD_RETRIES) return;
    const t = setTimeout(() => {
      settle(status, body).catch(() => later(status, body, attempt + 1));
    }, RECORD_RETRY_MS);
    t.unref();
  };
  let settled = false;
  const original = res.json;
  res.json = function recordingJson(this: Response, body?: unknown) {
    res.json = original;
    if (settled) return original.call(res, body);
    settled = true;
    settle(res.statusCode, body)
      .catch((e) => {
        failed(e);
        later(res.statusCode, body);
      })
      .finally(() => {
        ctx.done();
        original.call(res, body);
      });
    return res;
  } as Response['json'];
  res.on('finish', () => {
    if (settled) return;
    settled = true;
    settle(res.statusCode, undefined).catch((e) => {
      failed(e);
      later(res.statusCode, undefined);
    }).finally(ctx.done);
  });
}

/**
 * Housekeeping: deletes keys created before `olderThan` ('done' ones only unless
 * `includeInProgress`, which an operator uses after checking that a crashed request's command
 * did or did not commit). Returns the number of rows deleted.
 */
export async function purgeIdempotencyKeys(req: { db: Knex; olderThan: Date; includeInProgress?: boolean }): Promise<number> {
  return deleteKeysBefore(req.db, req.olderThan, req.includeInProgress ?? false);
}
