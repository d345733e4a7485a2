import { expect } from 'chai';
import { FetchFn, HttpClient, NetworkError, ServiceError } from '@vbi/client/client/http';
import { VbiError } from '@vbi/core/errors';

interface Seen {
  url: string;
  method: string;
  headers: Record<string, string>;
  body?: string;
}

function fakeFetch(answers: Array<Response | Error>): { fetch: FetchFn; seen: Seen[] } {
  const seen: Seen[] = [];
  const fetch: FetchFn = async (url, init) => {
    seen.push({ url, method: String(init.method), headers: init.headers as Record<string, string>, body: init.body as string | undefined });
    const next = answers.shift();
    if (!next) throw new Error('no more answers');
    if (next instanceof Error) throw next;
    return next;
  };
  return { fetch, seen };
}

const json = (status: number, body: unknown) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
const netFail = () => Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNRESET' } });
const noSleep = async () => undefined;

async function rejection(p: Promise<unknown>): Promise<Error & { code?: string; status?: number; details?: unknown }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

describe('client HTTP layer', () => {
  it('sends JSON and returns the parsed answer', async () => {
    const f = fakeFetch([json(200, { ok: 1 })]);
    const http = new HttpClient({ baseUrl: 'http://meter.test/', fetch: f.fetch });
    expect(await http.post('/v1/balance', { a: 1 })).to.deep.equal({ ok: 1 });
    expect(f.seen[0]).to.deep.include({ url: 'http://meter.test/v1/balance', method: 'POST', body: '{"a":1}' });
    expect(f.seen[0].headers['content-type']).to.equal('application/json');
    expect(f.seen[0].headers).not.to.have.property('idempotency-key');
  });

  it('maps error answers to VbiError with the code, message and details', async () => {
    const f = fakeFetch([json(409, { error: { code: 'REGISTER_MISMATCH', message: 'differs', details: { ascendingRegister: 5 } } })]);
    const e = await rejection(new HttpClient({ baseUrl: 'http://x', fetch: f.fetch }).post('/v1/balance', {}));
    expect(e).to.be.instanceOf(VbiError);
    expect(e).to.include({ code: 'REGISTER_MISMATCH', message: 'differs', status: 409 });
    expect(e.details).to.deep.equal({ ascendingRegister: 5 });
  });

  it('an unknown code becomes a ServiceError carrying it; a non-JSON error HTTP_<status>', async () => {
    const f = fakeFetch([json(409, { error: { code: 'FUTURE_CODE', message: 'no' } }), new Response('<html>bad gateway</html>', { status: 502 })]);
    const http = new HttpClient({ baseUrl: 'http://x', fetch: f.fetch });
    const a = await rejection(http.post('/v1/indicia', {}));
    expect(a).to.be.instanceOf(ServiceError);
    expect(a).to.include({ code: 'FUTURE_CODE', message: 'no', status: 409 });
    const b = await rejection(http.post('/v1/indicia', {}));
    expect(b).to.include({ code: 'HTTP_502' });
  });

  it('retries a network failure with the same Idempotency-Key and the same bytes', async () => {
    const f = fakeFetch([netFail(), netFail(), json(201, { paymentId: 'p1' })]);
    const http = new HttpClient({ baseUrl: 'http://x', fetch: f.fetch, sleep: noSleep });
    expect(await http.post('/v1/purchases', { amount: 1 }, { idempotencyKey: 'key-1' })).to.deep.equal({ paymentId: 'p1' });
    expect(f.seen).to.have.length(3);
    expect(new Set(f.seen.map((s) => s.headers['idempotency-key']))).to.deep.equal(new Set(['key-1']));
    expect(new Set(f.seen.map((s) => s.body)).size).to.equal(1);
  });

  it('gives up after the attempts with NETWORK_ERROR', async () => {
    const f = fakeFetch([netFail(), netFail(), netFail()]);
    const e = await rejection(new HttpClient({ baseUrl: 'http://x', fetch: f.fetch, sleep: noSleep }).post('/v1/purchases', {}, { idempotencyKey: 'k' }));
    expect(e).to.be.instanceOf(NetworkError);
    expect(e.code).to.equal('NETWORK_ERROR');
    expect(e.message).to.match(/after 3 attempts: ECONNRESET/);
  });

  it('never retries a request without an Idempotency-Key, nor an error answer', async () => {
    const a = fakeFetch([netFail(), json(200, {})]);
    await rejection(new HttpClient({ baseUrl: 'http://x', fetch: a.fetch, sleep: noSleep }).post('/v1/balance', {}));
    expect(a.seen).to.have.length(1);
    const b = fakeFetch([json(503, { error: { code: 'NO_MODULE', message: 'busy' } }), json(200, {})]);
    const e = await rejection(new HttpClient({ baseUrl: 'http://x', fetch: b.fetch, sleep: noSleep }).post('/v1/indicia', {}, { idempotencyKey: 'k' }));
    expect(e.code).to.equal('NO_MODULE');
    expect(b.seen).to.have.length(1);
  });
});
