import { expect } from 'chai';
import express from 'express';
import { vbiError } from '@vbi/core/errors';
import { errorHandler, notFoundHandler } from '@vbi/server/api/http-errors';
import { jsonBody } from '@vbi/server/api/json-body';
import { ApiRegistry, DocumentedMiddleware, expressRoutes, routesMissingFromSpec } from '@vbi/server/api/openapi';
import { meterIdSchema, millsSchema, objectSchema } from '@vbi/server/api/validation';
import { listen, TestServer } from '../helpers/http-server';

const headerMiddleware: DocumentedMiddleware = Object.assign((_req: express.Request, _res: express.Response, next: express.NextFunction) => next(), {
  openapi: {
    parameters: [{ name: 'X-Trace', in: 'header' as const, required: false, schema: { type: 'string' } }],
    responses: { 409: { description: 'conflict' } },
  },
});

function buildApp() {
  const app = express();
  app.use(jsonBody());
  const api = new ApiRegistry(app, { title: 'VBI postage meter', version: '1.0.0' });
  api.defineRoute<{ amount: number }>({
    method: 'post',
    path: '/v1/meters/:meterId/purchases',
    summary: 'buy postage (postage value download)',
    tags: ['purchases'],
    params: objectSchema({ meterId: meterIdSchema }),
    body: objectSchema({ amount: millsSchema }),
    middleware: [headerMiddleware],
    responses: { 201: { description: 'purchased', schema: objectSchema({ meterId: meterIdSchema, amount: millsSchema }) } },
    handler: (req) => ({ meterId: req.params.meterId, amount: req.body.amount }),
  });
  api.defineRoute<unknown, { limit?: number }>({
    method: 'get',
    path: '/v1/meters/:meterId/indicia',
    summary: 'list indicia',
    query: objectSchema({ limit: { type: 'integer', minimum: 1, maximum: 100 } }, []),
    responses: { 200: { description: 'the indicia', schema: { type: 'array', items: { type: 'integer' } } } },
    handler: (req) => Array.from({ length: req.query.limit ?? 2 }, (_, i) => i),
  });
  api.defineRoute({
    method: 'get',
    path: '/v1/fail',
    summary: 'always fails',
    responses: { 200: { description: 'never' } },
    handler: () => {
      throw vbiError('UNKNOWN_METER');
    },
  });
  const router = express.Router();
  const sub = api.forRouter(router, '/v1/admin');
  sub.defineRoute({ method: 'delete', path: '/sessions/:id', summary: 'end a session', responses: { 204: { description: 'ended' } }, handler: (_req, res) => void res.status(204).end() });
  app.use('/v1/admin', router);
  api.serveOpenApi();
  return { app, api };
}

describe('route registry and OpenAPI document', () => {
  let srv: TestServer;
  let built: ReturnType<typeof buildApp>;
  before(async () => {
    built = buildApp();
    built.app.use(notFoundHandler());
    built.app.use(errorHandler());
    srv = await listen(built.app);
  });
  after(() => srv.close());

  it('registers working routes with validation and the first 2xx status', async () => {
    const ok = await srv.request('/v1/meters/VBI-7/purchases', { body: { amount: 2500 } });
    expect(ok.status).to.equal(201);
    expect(ok.json).to.deep.equal({ meterId: 'VBI-7', amount: 2500 });
    const bad = await srv.request('/v1/meters/VBI-7/purchases', { body: { amount: 2500, free: true } });
    expect(bad.status).to.equal(400);
    expect(bad.json.error.code).to.equal('VALIDATION_FAILED');
    const list = await srv.request('/v1/meters/VBI-7/indicia?limit=3');
    expect(list.json).to.deep.equal([0, 1, 2]);
    const fail = await srv.request('/v1/fail');
    expect(fail.status).to.equal(404);
    expect(fail.json.error.code).to.equal('UNKNOWN_METER');
    const del = await srv.request('/v1/admin/sessions/abc', { method: 'DELETE' });
    expect(del.status).to.equal(204);
  });

  it('describes each operation from the same schemas', () => {
    const doc = built.api.openApiDocument();
    expect(doc.openapi).to.equal('3.1.0');
    const op = doc.paths['/v1/meters/{meterId}/purchases'].post as Record<string, any>;
    expect(op.operationId).to.equal('postV1MetersByMeterIdPurchases');
    expect(op.tags).to.deep.equal(['purchases']);
    expect(op.parameters).to.deep.equal([
      { name: 'meterId', in: 'path', required: true, schema: meterIdSchema },
      { name: 'X-Trace', in: 'header', required: false, schema: { type: 'string' } },
    ]);
    expect(op.requestBody.content['application/json'].schema).to.deep.equal(objectSchema({ amount: millsSchema }));
    expect(Object.keys(op.responses)).to.have.members(['201', '409', 'default']);
    expect(op.responses.default.content['application/json'].schema).to.deep.equal({ $ref: '#/components/schemas/Error' });
    const list = doc.paths['/v1/meters/{meterId}/indicia'].get as Record<string, any>;
    expect(list.parameters).to.deep.equal([
      { name: 'meterId', in: 'path', required: true, schema: { type: 'string' } },
      { name: 'limit', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: 100 } },
    ]);
    expect(list.requestBody).to.equal(undefined);
    expect(doc.components.schemas.Error).to.have.nested.property('properties.error.properties.code.enum').that.includes('VALIDATION_FAILED');
  });

  it('serves the document at GET /v1/openapi.json', async () => {
    const r = await srv.request('/v1/openapi.json');
    expect(r.status).to.equal(200);
    expect(r.json).to.deep.equal(built.api.openApiDocument());
    expect(r.json.paths['/v1/openapi.json'].get.summary).to.equal('this OpenAPI document');
  });

  it('walks the express router stack, mounted routers included', () => {
    expect(expressRoutes(built.app)).to.deep.include.members([
      { method: 'POST', path: '/v1/meters/{meterId}/purchases' },
      { method: 'DELETE', path: '/v1/admin/sessions/{id}' },
      { method: 'GET', path: '/v1/openapi.json' },
    ]);
  });

  it('every route is documented and every documented operation is routed', () => {
    const doc = built.api.openApiDocument();
    expect(doc.paths).to.have.property('/v1/admin/sessions/{id}');
    expect(routesMissingFromSpec(built.app, doc)).to.deep.equal({ undocumented: [], unrouted: [] });
  });

  it('finds routes added behind the registry and operations nothing serves', () => {
    const { app, api } = buildApp();
    app.get('/v1/secret-debug', (_req, res) => void res.json({}));
    const doc = api.openApiDocument();
    doc.paths['/v1/ghost'] = { get: {} };
    expect(routesMissingFromSpec(app, doc)).to.deep.equal({
      undocumented: ['GET /v1/secret-debug'],
      unrouted: ['GET /v1/ghost'],
    });
  });

  it('refuses definitions it cannot document', () => {
    const api = new ApiRegistry(express.Router(), { title: 't', version: '1' });
    const base = { method: 'get' as const, summary: 's', responses: { 200: { description: 'ok' } }, handler: () => 1 };
    expect(() => api.defineRoute({ ...base, path: '/v1/files/*rest' })).to.throw(/only literal segments/);
    expect(() => api.defineRoute({ ...base, path: '/v1/x', responses: {} })).to.throw(/at least one response/);
    expect(() => api.defineRoute({ ...base, path: '/v1/m/:meterId', params: objectSchema({ id: { type: 'string' } }) })).to.throw(/exactly meterId/);
    api.defineRoute({ ...base, path: '/v1/once' });
    expect(() => api.defineRoute({ ...base, path: '/v1/once' })).to.throw(/defined twice/);
  });
});
