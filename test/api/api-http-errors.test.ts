import { expect } from 'chai';
import { ERROR_CODES } from '@vbi/core/errors';
import express from 'express';
import { vbiError } from '@vbi/core/errors';
import { errorHandler, notFoundHandler } from '@vbi/server/api/http-errors';
import { jsonBody, requireJsonContent } from '@vbi/server/api/json-body';
import { listen, TestServer } from '../helpers/http-server';

describe('HTTP error mapping', () => {
  let srv: TestServer;
  const logged: string[] = [];

  before(async () => {
    const app = express();
    app.use(jsonBody({ limit: '1kb' }));
    app.get('/user-error', () => {
      throw vbiError('INSUFFICIENT_FUNDS', 'descending register holds 5 mills', { field: 'amount' });
    });
    app.get('/internal-error', () => {
      throw vbiError('HSM_ERROR', 'C_Sign failed on slot 3', { label: 'secret-key-label' });
    });
    app.get('/async-bug', async () => {
      await Promise.resolve();
      throw new Error('db password hunter2 in connection string');
    });
    app.get('/rate-limited', () => {
      throw vbiError('RATE_LIMITED', 'slow down', { retryAfterSeconds: 7 });
    });
    app.post('/echo', requireJsonContent(), (req, res) => {
      res.json({ got: req.body });
    });
    app.use(notFoundHandler());
    app.use(errorHandler({ log: (l) => logged.push(l) }));
    srv = await listen(app);
  });
  after(() => srv.close());
  beforeEach(() => {
    logged.length = 0;
  });

  it('maps a user VbiError to its status with code, message and details', async () => {
    const r = await srv.request('/user-error');
    expect(r.status).to.equal(409);
    expect(r.json).to.deep.equal({ error: { code: 'INSUFFICIENT_FUNDS', message: 'descending register holds 5 mills', details: { field: 'amount' } } });
    expect(r.headers.get('content-type')).to.match(/^application\/json/);
    expect(logged).to.deep.equal([]);
  });

  it("maps an internal VbiError to its 5xx with the registry's text only (no token wording, no details), and logs it all", async () => {
    const r = await srv.request('/internal-error');
    expect(r.status).to.equal(503);
    expect(r.json).to.deep.equal({ error: { code: 'HSM_ERROR', message: ERROR_CODES.HSM_ERROR.text } });
    expect(r.text).not.to.include('C_Sign');
    expect(logged.join()).to.include('HSM_ERROR').and.include('secret-key-label').and.include('C_Sign failed on slot 3');
  });

  it('answers an unexpected error with a bare 500 INTERNAL and logs the stack', async () => {
    const r = await srv.request('/async-bug');
    expect(r.status).to.equal(500);
    expect(r.json).to.deep.equal({ error: { code: 'INTERNAL', message: 'internal error' } });
    expect(r.text).not.to.include('hunter2');
    expect(r.text).not.to.include('.js:');
    expect(logged).to.have.length(1);
    expect(logged[0]).to.include('hunter2').and.include('GET /async-bug');
  });

  it('sets Retry-After on RATE_LIMITED', async () => {
    const r = await srv.request('/rate-limited');
    expect(r.status).to.equal(429);
    expect(r.headers.get('retry-after')).to.equal('7');
    expect(r.json.error.code).to.equal('RATE_LIMITED');
  });

  const bodyCases: Array<{ name: string; rawBody: string; headers: Record<string, string>; status: number; code: string }> = [
    { name: 'malformed JSON', rawBody: '{"amount": 5,', headers: { 'content-type': 'application/json' }, status: 400, code: 'BAD_JSON' },
    { name: 'a bare JSON string (strict parser)', rawBody: '"5"', headers: { 'content-type': 'application/json' }, status: 400, code: 'BAD_JSON' },
    { name: 'a body over the limit', rawBody: JSON.stringify({ pad: 'x'.repeat(2000) }), headers: { 'content-type': 'application/json' }, status: 413, code: 'BODY_TOO_LARGE' },
    { name: 'form data instead of JSON', rawBody: 'amount=5', headers: { 'content-type': 'application/x-www-form-urlencoded' }, status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
    { name: 'an unsupported charset', rawBody: '{}', headers: { 'content-type': 'application/json; charset=koi8-r' }, status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  ];
  for (const c of bodyCases) {
    it(`refuses ${c.name}: ${c.status} ${c.code}`, async () => {
      const r = await srv.request('/echo', { method: 'POST', rawBody: c.rawBody, headers: c.headers });
      expect(r.status).to.equal(c.status);
      expect(r.json.error.code).to.equal(c.code);
      expect(logged).to.deep.equal([]);
    });
  }

  it('accepts well-formed JSON', async () => {
    const r = await srv.request('/echo', { body: { amount: 5 } });
    expect(r.status).to.equal(200);
    expect(r.json).to.deep.equal({ got: { amount: 5 } });
  });

  it('answers unknown routes with 404 NOT_FOUND', async () => {
    const r = await srv.request('/v1/nothing-here?x=1');
    expect(r.status).to.equal(404);
    expect(r.json).to.deep.equal({ error: { code: 'NOT_FOUND', message: 'no route for GET /v1/nothing-here' } });
  });
});
