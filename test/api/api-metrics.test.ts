import { expect } from 'chai';
import express from 'express';
import { vbiError } from '@vbi/core/errors';
import { errorHandler, notFoundHandler } from '@vbi/server/api/http-errors';
import { ApiMetrics } from '@vbi/server/api/metrics';
import { ApiRegistry, routesMissingFromSpec } from '@vbi/server/api/openapi';
import { listen, TestServer } from '../helpers/http-server';

describe('metrics (prom-client)', () => {
  let srv: TestServer;
  let api: ApiRegistry;
  let app: express.Express;
  const modules = [
    { serial: 'A1', state: 'Idle' },
    { serial: 'B2', state: 'Error' },
  ];

  before(async () => {
    app = express();
    const metrics = new ApiMetrics();
    app.use(metrics.middleware());
    metrics.registerGauge({
      name: 'module_state',
      help: 'cryptographic module state (1 for the current state)',
      labelNames: ['serial', 'state'],
      collect: () => modules.map((m) => ({ labels: m, value: 1 })),
    });
    metrics.registerGauge({ name: 'pool_available_mills', help: 'postage pool', collect: async () => 123_000 });
    api = new ApiRegistry(app, { title: 't', version: '1' });
    api.defineRoute({ method: 'get', path: '/v1/meters/:meterId', summary: 'a meter', responses: { 200: { description: 'ok' } }, handler: () => ({ ok: true }) });
    api.defineRoute({
      method: 'get', path: '/v1/broken', summary: 'fails', responses: { 200: { description: 'never' } },
      handler: () => {
        throw vbiError('NO_MODULE');
      },
    });
    api.defineRoute({
      method: 'get', path: '/v1/metrics', summary: 'Prometheus metrics', tags: ['meta'],
      responses: { 200: { description: 'text exposition format', contentType: 'text/plain', schema: { type: 'string' } } },
      handler: metrics.handler(),
    });
    app.use(notFoundHandler());
    app.use(errorHandler({ log: () => undefined }));
    srv = await listen(app);
  });
  after(() => srv.close());

  it('counts requests by route pattern and status, and times them', async () => {
    await srv.request('/v1/meters/VBI-1');
    await srv.request('/v1/meters/VBI-2');
    await srv.request('/v1/broken');
    await srv.request('/v1/no/such/route');
    const r = await srv.request('/v1/metrics');
    expect(r.status).to.equal(200);
    expect(r.headers.get('content-type')).to.match(/^text\/plain/);
    expect(r.text).to.include('vbi_http_requests_total{method="GET",route="/v1/meters/:meterId",status="200"} 2');
    expect(r.text).to.include('vbi_http_requests_total{method="GET",route="/v1/broken",status="503"} 1');
    expect(r.text).to.include('vbi_http_requests_total{method="GET",route="unmatched",status="404"} 1');
    expect(r.text).to.include('vbi_http_request_duration_seconds_count{method="GET",route="/v1/meters/:meterId",status="200"} 2');
    expect(r.text).not.to.include('VBI-1');
  });

  it('reads registered gauges on every scrape', async () => {
    let r = await srv.request('/v1/metrics');
    expect(r.text).to.include('vbi_module_state{serial="A1",state="Idle"} 1');
    expect(r.text).to.include('vbi_module_state{serial="B2",state="Error"} 1');
    expect(r.text).to.include('vbi_pool_available_mills 123000');
    modules[1].state = 'Idle';
    r = await srv.request('/v1/metrics');
    expect(r.text).to.include('vbi_module_state{serial="B2",state="Idle"} 1');
    expect(r.text).not.to.include('state="Error"');
  });

  it('is documented like every other route', () => {
    expect(routesMissingFromSpec(app, api.openApiDocument())).to.deep.equal({ undocumented: [], unrouted: [] });
    expect(api.openApiDocument().paths['/v1/metrics'].get).to.have.nested.property('responses.200.content.text/plain');
  });
});
