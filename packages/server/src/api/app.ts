// Over 300 lines: the HTTP API's route table, read as one list; each route's work is in the layers below.
import express from 'express';
import type { Knex } from 'knex';
import { MailerService } from '../mailer/mailer-service';
import type { ModuleHealth } from '../service';
import { IndiciumVerifier } from '@vbi/core/indicium/verify';
import { bearer } from './credentials';
import { computePostage } from '@vbi/core/rates/postage';
import { OperationalRequest } from '@vbi/core/protocol/messages';
import { ApiRegistry, DocumentedMiddleware, ERROR_SCHEMA_REF } from './openapi';
import { errorHandler, notFoundHandler } from './http-errors';
import { jsonBody } from './json-body';
import { refuseContentEncoding, textGuard } from './text-guard';
import { shardRedirect, ShardRouting } from './shard-redirect';
import { objectSchema, meterIdSchema, millsSchema } from './validation';
import { idempotency, idempotencyContext } from './idempotency';
import { RateLimiter } from './rate-limit';
import { ApiMetrics } from './metrics';
import { vbiError } from '@vbi/core/errors';
import { anyObject, idSchema, bodies, challengeSchema, completeSchema, envelopeSchema, heartbeatSchema, registrationSchema, resyncSchema, verifySchema } from './schemas';
import type { ResyncRequest } from '@vbi/core/protocol/messages';
import { defineLabelRoutes, LABEL_IMAGE_LIMIT } from './label-routes';
import { webAppCsp, webAppStatic } from './web-app';
import type { Checkout } from '../payments/payment-provider';
import { defineOperatorViews } from './operator-views';
import { pingDatabase } from '../db/repositories/health';
import { listFraudReports } from '../db/repositories/fraud-reports';
import { listLicenceRequests, listUnmatchedLicenceEvents } from '../db/repositories/licence-queue';

export interface AppDeps {
  db: Knex;
  mailer: MailerService;
  /** Records every sighting (duplicate detection, fraud policy): the mail stream's scans. */
  verifier: IndiciumVerifier;
  /** The same checks without recording (`"record": false`: a mailer checking its own label). */
  checker: IndiciumVerifier;
  status: () => { modules: ModuleHealth[]; commits?: { groups: number; commands: number } };
  /** What an operator may do through /v1/operator (the transaction engine's commands). */
  operator: {
    reactivateMeter(req: { meterId: string; operator: string; reason: string }): Promise<unknown>;
    suspendMeter(req: { meterId: string; operator: string; reason: string }): Promise<unknown>;
    withdrawMeter(req: { meterId: string; operator: string; reason: string }): Promise<unknown>;
    refundAndClose(req: { meterId: string; operator: string; reason: string }): Promise<unknown>;
    /** The module's revoke-licence command (Ledger.revokeLicence; docs/licensing.md). */
    revokeLicence(req: { meterId: string; operator: string; reason: string }): Promise<{ licence: string; licenceId: string }>;
    /** Stock bought from the post enters the pool, once per post's reference (Ledger.purchaseFromPost). */
    purchaseStock(req: { amount: number; reference: string; operator: string }): Promise<{ purchaseId: number; amount: number; reference: string; created: boolean }>;
    pool(): Promise<{ purchased: number; available: number; refundsPaid: number }>;
  };
  /** The payment processor as a browser sees it (GET /v1/payment-methods; docs/payments.md). */
  checkout?: Checkout & { provider: string; unitMills: number };
  /** Authentication endpoints: attempts per client (IP + meter) and window. */
  authRateLimit?: { limit: number; windowMs: number; clock?: () => number };
  /** This process's instance id and the liveness of others (idempotency owners; packages/server/src/service.ts). */
  instance?: { id: string; alive: (id: string) => Promise<boolean> };
  log?: (line: string) => void;
  /** The shard this process serves and where the others are (packages/server/src/api/shard-redirect.ts); absent: one shard. */
  shard?: ShardRouting;
  /** Express's `trust proxy` setting: whose X-Forwarded-For names the client (unset: nobody's). */
  trustProxy?: string;
}

/**
 * The service's HTTP API (docs/protocol.md): express routes defined once, with their JSON
 * Schemas, in the registry that also writes the OpenAPI document at /v1/openapi.json.
 */
export function createApp(deps: AppDeps): { app: express.Express; api: ApiRegistry } {
  const app = express();
  app.disable('x-powered-by');
  if (deps.trustProxy) app.set('trust proxy', deps.trustProxy);
  const metrics = new ApiMetrics();
  metrics.registerGauge({
    name: 'modules_serving', help: 'modules in Idle or User state',
    collect: () => deps.status().modules.filter((m) => (m.state === 'Idle' || m.state === 'User') && m.inRotation).length,
  });
  metrics.registerGauge({
    name: 'commit_groups', help: 'commit groups (one transaction, one ring append each) committed and released since start',
    collect: () => deps.status().commits?.groups ?? 0,
  });
  metrics.registerGauge({
    name: 'committed_commands', help: 'module commands committed and released since start (in all commit groups)',
    collect: () => deps.status().commits?.commands ?? 0,
  });
  app.use(metrics.middleware());
  app.use(refuseContentEncoding());
  // label images for the web app's verify page are larger than any protocol message
  app.use('/v1/labels/read', jsonBody({ limit: LABEL_IMAGE_LIMIT }));
  app.use(jsonBody());
  app.use(textGuard());
  if (deps.shard) app.use(shardRedirect(deps.shard));
  const api = new ApiRegistry(app, { title: 'VBI postage meter', version: '1', description: 'Mailer protocol VBI-OP-1: docs/protocol.md' });
  const m = deps.mailer;
  const limiter = new RateLimiter({ limit: deps.authRateLimit?.limit ?? 20, windowMs: deps.authRateLimit?.windowMs ?? 60_000, clock: deps.authRateLimit?.clock });
  const authLimit: DocumentedMiddleware[] = [limiter.middleware()];
  // Keys are scoped by the meter whose HMK signed the request: the envelope MAC is checked (in a
  // module, without using the challenge) before a key is reserved, so a retry still replays.
  const idem = [idempotency({
    db: deps.db, log: deps.log, owner: deps.instance?.id, ownerAlive: deps.instance?.alive,
    scope: async (req) => {
      const e = req.body as OperationalRequest;
      await m.authenticate(e);
      return e.meterId;
    },
  })];
  const ok = (description: string) => ({ 200: { description, schema: anyObject }, 400: { description: 'invalid request', schema: ERROR_SCHEMA_REF } });
  const env = <B>(req: { body: unknown }) => req.body as OperationalRequest<B>;

  // --- service ---
  api.defineRoute({
    method: 'get', path: '/v1/health', summary: 'module state machines and database reachability',
    responses: { 200: { description: 'serving', schema: anyObject }, 503: { description: 'no module serving or database down', schema: anyObject } },
    handler: async (_req, res) => {
      const status = deps.status();
      let database = 'ok';
      try {
        await pingDatabase(deps.db);
      } catch (e) {
        database = `down: ${(e as Error).message}`;
      }
      // serving: a module in Idle or User that the transaction engine has not taken out of rotation
      const serving = status.modules.some((x) => (x.state === 'Idle' || x.state === 'User') && x.inRotation);
      // the probe in summary: which checks failed, not the token's details (`ceremony probe` has those)
      const modules = status.modules.map((m) => ({
        ...m,
        probe: m.probe && { profile: m.probe.profile, ok: m.probe.ok, failed: m.probe.checks.filter((c) => !c.ok).map((c) => c.name) },
      }));
      res.status(serving && database === 'ok' ? 200 : 503).json({ modules, database });
    },
  });
  api.defineRoute({
    method: 'get', path: '/v1/metrics', summary: 'Prometheus metrics',
    responses: { 200: { description: 'text exposition format', contentType: 'text/plain', schema: { type: 'string' } } },
    handler: metrics.handler(),
  });
  api.defineRoute<unknown, { mailClass: string; weightOz: number; zone?: number }>({
    method: 'get', path: '/v1/rates', summary: 'price one piece from the rate table in effect',
    query: objectSchema({ mailClass: { type: 'string', maxLength: 40 }, weightOz: { type: 'number', exclusiveMinimum: 0 }, zone: { type: 'integer', minimum: 1, maximum: 9 } }, ['mailClass', 'weightOz']),
    responses: ok('quote'),
    handler: (req) => computePostage({ mailClass: req.query.mailClass, weightOz: Number(req.query.weightOz), zone: req.query.zone === undefined ? undefined : Number(req.query.zone) }),
  });
  api.defineRoute({
    method: 'get', path: '/v1/payment-methods', summary: 'the payment processor, the method kinds it takes, and what a browser needs to take one (public)',
    responses: ok('payment methods'),
    handler: async () => {
      const c = deps.checkout ?? { provider: 'none', unitMills: 1, methods: [] };
      return { provider: c.provider, unitMills: c.unitMills, methods: c.methods, ...(c.stripePublishableKey ? { stripe: { publishableKey: c.stripePublishableKey } } : {}) };
    },
  });
  api.defineRoute({
    method: 'get', path: '/v1/modules', summary: 'modules, their identity certificates and transport keys',
    responses: ok('modules'), handler: async () => ({ modules: await m.modules() }),
  });

  // --- registration ---
  api.defineRoute<{ name: string; licensingZip: string; returnAddress: string[] }>({
    method: 'post', path: '/v1/registrations', summary: 'create an account, request a license, assign a certified meter',
    body: registrationSchema, before: authLimit,
    responses: { 201: { description: 'registered', schema: anyObject }, 400: { description: 'invalid', schema: ERROR_SCHEMA_REF } },
    handler: (req) => m.register(req.body),
  });
  api.defineRoute<{ moduleSerial: string; clientNonce: string }>({
    method: 'post', path: '/v1/registrations/:meterId/challenge', summary: 'the module signs the client nonce with its identity key',
    params: objectSchema({ meterId: meterIdSchema }), body: challengeSchema, before: authLimit, responses: ok('signed challenge'),
    handler: (req) => m.challenge({ meterId: String(req.params.meterId), ...req.body }),
  });
  api.defineRoute<{ moduleSerial: string; registrationToken: string; encryptedHmk: string; encryptedPasswordSecret: string }>({
    method: 'post', path: '/v1/registrations/:meterId/complete', summary: 'HMK and password secret into the meter package',
    params: objectSchema({ meterId: meterIdSchema }), body: completeSchema, before: authLimit, responses: ok('first challenge'),
    handler: (req) => m.complete({ meterId: String(req.params.meterId), ...req.body }),
  });

  // --- operational requests ---
  api.defineRoute({ method: 'post', path: '/v1/balance', summary: 'registers', body: envelopeSchema('balance', bodies.balance), responses: ok('operational response'), handler: (req) => m.balance(env(req)) });
  api.defineRoute({ method: 'post', path: '/v1/history', summary: 'journal of the meter', body: envelopeSchema('history', bodies.history), responses: ok('operational response'), handler: (req) => m.history(env(req)) });
  api.defineRoute({
    method: 'post', path: '/v1/purchases', summary: 'buy postage (payment, then postage value download)',
    body: envelopeSchema('purchase', bodies.purchase), middleware: idem, responses: ok('operational response'), handler: (req, res) => m.purchase(env(req), idempotencyContext(res)),
  });
  api.defineRoute({
    method: 'post', path: '/v1/purchases/:paymentId/settle', summary: 'download a pending payment once it cleared',
    params: objectSchema({ paymentId: idSchema }), body: envelopeSchema('purchase', bodies.settle), responses: ok('operational response'),
    handler: (req) => {
      const body = env<{ paymentId: number }>(req);
      if (Number(req.params.paymentId) !== body.body.paymentId) throw vbiError('VALIDATION_FAILED', 'the payment id in the path and in the body differ', { in: 'params', errors: [{ path: '/paymentId', message: 'must equal body.paymentId' }] });
      return m.settle(body);
    },
  });
  api.defineRoute({ method: 'post', path: '/v1/refunds', summary: 'partial (spoilage) or full refund', body: envelopeSchema('refund', bodies.refund), responses: ok('operational response'), handler: (req) => m.refund(env(req)) });

  // --- the mailer's secrets (docs/protocol.md 7) ---
  api.defineRoute({
    method: 'post', path: '/v1/rekey', summary: "a new HMK and password for the meter (proves the current password; the only operation once the user secrets expired)",
    body: envelopeSchema('rekey', bodies.rekey), before: authLimit, responses: ok('operational response'), handler: (req) => m.rekey(env(req)),
  });

  // --- sessions and printing ---
  api.defineRoute({
    method: 'post', path: '/v1/sessions', summary: 'open a continuous session (password, session key)',
    body: envelopeSchema('session-open', bodies.sessionOpen), before: authLimit, responses: ok('operational response'), handler: (req) => m.openSession(env(req)),
  });
  api.defineRoute<{ meterId: string; counter: number; clientTime: number; dynamicPassword: string }>({
    method: 'post', path: '/v1/sessions/:sessionId/heartbeat', summary: 'keep the session alive with a dynamic password',
    params: objectSchema({ sessionId: { type: 'string', pattern: '^[0-9a-f]{32}$' } }), body: heartbeatSchema, responses: ok('alive'),
    handler: (req) => m.heartbeat({ sessionId: String(req.params.sessionId), ...req.body }),
  });
  api.defineRoute({
    method: 'post', path: '/v1/sessions/:sessionId/close', summary: 'close the session',
    params: objectSchema({ sessionId: { type: 'string', pattern: '^[0-9a-f]{32}$' } }), body: envelopeSchema('session-close', bodies.sessionClose), responses: ok('operational response'),
    handler: (req) => {
      const body = env<{ sessionId: string }>(req);
      if (req.params.sessionId !== body.body.sessionId) throw vbiError('VALIDATION_FAILED', 'the session id in the path and in the body differ', { in: 'params', errors: [{ path: '/sessionId', message: 'must equal body.sessionId' }] });
      return m.closeSession(body);
    },
  });
  api.defineRoute({
    method: 'post', path: '/v1/indicia', summary: 'print a batch of indicia (one or more) in a session',
    body: envelopeSchema('print', bodies.print), middleware: idem, responses: ok('authorisation and printed items'), handler: (req, res) => m.print(env(req), idempotencyContext(res)),
  });
  api.defineRoute({
    method: 'post', path: '/v1/corrections', summary: 'correction indicium',
    body: envelopeSchema('correction', bodies.correction), middleware: idem, responses: ok('authorisation and the printed correction'), handler: (req, res) => m.correction(env(req), idempotencyContext(res)),
  });

  // --- recovery ---
  api.defineRoute<ResyncRequest>({
    method: 'post', path: '/v1/resync', summary: 'next challenge, registers and transactions for a client that lost its state (HMAC over a fresh nonce)',
    body: resyncSchema, before: authLimit, responses: ok('signed resync answer'), handler: (req) => m.resync(req.body),
  });
  api.defineRoute({
    method: 'post', path: '/v1/indicia/redeliver', summary: 'committed indicia again, encrypted to the open session',
    body: envelopeSchema('redeliver', bodies.redeliver), responses: ok('operational response with the indicia'), handler: (req) => m.redeliver(env(req)),
  });

  // --- verification ---
  api.defineRoute<{ indicium: string; location?: string; record?: boolean }>({
    method: 'post', path: '/v1/verify',
    summary: 'verify a scanned indicium (signature, chain, validity); a postal verifier (Authorization: Bearer) records the sighting and learns of duplicates',
    body: verifySchema, responses: ok('result code and fields'),
    handler: async (req) => {
      // Only an authenticated postal verifier's scan is a sighting in the mail stream; anyone
      // else (a mailer checking a label, a photo of one) is answered and nothing is recorded.
      const postal = await bearer(deps.db, 'verifier', req.get('authorization'));
      const indicium = Buffer.from(req.body.indicium, 'base64');
      if (!postal || req.body.record === false) {
        const r = await deps.checker.verify({ indicium });
        return { result: r.code, reason: r.reason, fields: r.fields, digest: r.digest, recorded: false };
      }
      // the credential's name is its plant
      const r = await deps.verifier.verify({ indicium, scan: { location: req.body.location ?? postal.name, plant: postal.name } });
      return { result: r.code, reason: r.reason, fields: r.fields, digest: r.digest, firstSeen: r.firstSeen, recorded: r.code === 'VALID' || r.code === 'DUPLICATE' };
    },
  });

  // --- operators (Authorization: Bearer <operator credential>) ---
  const operatorOf = async (req: express.Request): Promise<{ id: string; name: string }> => {
    const op = await bearer(deps.db, 'operator', req.get('authorization'));
    if (!op) throw vbiError('OPERATOR_UNKNOWN', 'this route needs an operator credential (Authorization: Bearer)');
    return op;
  };
  api.defineRoute<unknown, { meterId?: string }>({
    method: 'get', path: '/v1/operator/fraud-cases', summary: "fraud cases (duplicates with both sightings), newest first; one meter's with ?meterId",
    query: objectSchema({ meterId: meterIdSchema }, []), responses: ok('cases'),
    handler: async (req) => {
      await operatorOf(req);
      const rows = await listFraudReports(deps.db, req.query.meterId);
      return {
        cases: rows.map((r) => ({
          caseId: Number(r.fraud_report_id), kind: r.kind, meterId: r.meter_id, digest: r.indicium_digest ? Buffer.from(r.indicium_digest).toString('hex') : null,
          details: r.details, reportedAt: r.reported_at,
        })),
      };
    },
  });
  api.defineRoute<{ amount: number; reference: string }, Record<string, unknown>>({
    method: 'post', path: '/v1/operator/pool/purchases',
    summary: "enter stock bought from the post, with the post's reference (once per reference; a retry answers the same purchase; audited)",
    body: objectSchema({ amount: millsSchema, reference: { type: 'string', minLength: 1, maxLength: 128 } }, ['amount', 'reference']),
    responses: ok('purchase'),
    handler: async (req) => {
      const op = await operatorOf(req as unknown as express.Request);
      const purchase = await deps.operator.purchaseStock({ amount: req.body.amount, reference: req.body.reference, operator: `${op.name} (${op.id})` });
      return { ...purchase, pool: await deps.operator.pool() };
    },
  });
  const meterActions = [
    { action: 'reactivate', state: 'active', run: deps.operator.reactivateMeter, summary: 'reactivate a suspended meter after reviewing its fraud cases' },
    { action: 'suspend', state: 'suspended', run: deps.operator.suspendMeter, summary: 'suspend a meter (e.g. reported lost or stolen): no download, print or partial refund until reactivated' },
    { action: 'withdraw', state: 'closed', run: deps.operator.withdrawMeter, summary: 'withdraw (close) an empty meter' },
    { action: 'refund-and-close', state: 'closed', run: deps.operator.refundAndClose, summary: 'close a meter for good and refund its remaining postage to the mailer through the processor (a lost or stolen meter, after review)' },
  ];
  for (const a of meterActions) {
    api.defineRoute<{ reason: string }, Record<string, unknown>>({
      method: 'post', path: `/v1/operator/meters/:meterId/${a.action}`, summary: `${a.summary} (audited with the operator and the reason)`,
      params: objectSchema({ meterId: meterIdSchema }), body: objectSchema({ reason: { type: 'string', minLength: 1, maxLength: 500 } }, ['reason']),
      responses: ok('registers'),
      handler: async (req) => {
        const op = await operatorOf(req as unknown as express.Request);
        const registers = await a.run({ meterId: (req.params as { meterId: string }).meterId, operator: `${op.name} (${op.id})`, reason: req.body.reason });
        return { state: a.state, registers };
      },
    });
  }

  api.defineRoute<{ reason: string }, Record<string, unknown>>({
    method: 'post', path: '/v1/operator/meters/:meterId/revoke-licence',
    summary: "revoke a meter's licence: it prints nothing more and takes no postage; refunds still work; final (audited with the operator and the reason; docs/licensing.md)",
    params: objectSchema({ meterId: meterIdSchema }), body: objectSchema({ reason: { type: 'string', minLength: 1, maxLength: 500 } }, ['reason']),
    responses: ok('licence and registers'),
    handler: async (req) => {
      const op = await operatorOf(req as unknown as express.Request);
      const { licence, licenceId, ...registers } = await deps.operator.revokeLicence({
        meterId: (req.params as { meterId: string }).meterId, operator: `${op.name} (${op.id})`, reason: req.body.reason,
      });
      return { licence, licenceId, registers };
    },
  });
  api.defineRoute<unknown, { status?: string; meterId?: string }>({
    method: 'get', path: '/v1/operator/licence-requests',
    summary: "licence requests and where each stands at the licensing authority (with its revocation report, if any), newest first; one state's with ?status, one meter's with ?meterId (the meter's package is the authority on its licence)",
    query: objectSchema({ status: { type: 'string', enum: ['registering', 'pending', 'licensed', 'refused', 'revoked'] }, meterId: meterIdSchema }, []),
    responses: ok('licence requests'),
    handler: async (req) => {
      await operatorOf(req as unknown as express.Request);
      const rows = await listLicenceRequests(deps.db, { status: req.query.status, meterId: req.query.meterId });
      const iso = (d: Date | null) => (d ? d.toISOString() : null);
      return {
        requests: rows.map((r) => ({
          requestId: Number(r.request_id), accountId: Number(r.account_id), meterId: r.meter_id, licensingZip: r.licensing_zip, status: r.status,
          licenceId: r.licence_id, reason: r.reason, authorityRef: r.authority_ref, attempts: r.attempts, lastError: r.last_error,
          requestedAt: iso(r.created_at), registeredAt: iso(r.completed_at), lastAttemptAt: iso(r.last_attempt_at), decidedAt: iso(r.decided_at), revokedAt: iso(r.revoked_at),
          // the revocation's report to the authority (docs/licensing.md, "Revocation"): due, reported or unknown to it
          revocationReport: r.report_status ? { status: r.report_status, attempts: r.report_attempts, lastError: r.report_error, reportedAt: iso(r.reported_at) } : null,
        })),
      };
    },
  });
  api.defineRoute({
    method: 'get', path: '/v1/operator/licence-events/unmatched',
    summary: "licences the licensing authority revoked that no licence request of this service names (its event feed), newest first",
    responses: ok('unmatched licence events'),
    handler: async (req) => {
      await operatorOf(req as unknown as express.Request);
      const rows = await listUnmatchedLicenceEvents(deps.db);
      return { events: rows.map((r) => ({ authority: r.authority, licenceId: r.licence_id, reason: r.reason, revokedAt: r.revoked_at.toISOString(), receivedAt: r.received_at.toISOString() })) };
    },
  });

  defineOperatorViews(api, { db: deps.db, operatorOf });

  // --- labels for the web app ---
  defineLabelRoutes(api);

  api.serveOpenApi('/v1/openapi.json');
  app.use(webAppStatic(undefined, webAppCsp({ stripe: Boolean(deps.checkout?.stripePublishableKey) })));
  app.use(notFoundHandler());
  app.use(errorHandler({ log: deps.log }));
  return { app, api };
}
