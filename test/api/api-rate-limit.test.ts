import { expect } from 'chai';
import express from 'express';
import { errorHandler } from '@vbi/server/api/http-errors';
import { jsonBody } from '@vbi/server/api/json-body';
import { ipAndMeterKey, RateLimiter } from '@vbi/server/api/rate-limit';
import { listen, TestServer } from '../helpers/http-server';

describe('rate limiting (sliding window, injected clock)', () => {
  let now: number;
  const clock = () => now;
  beforeEach(() => {
    now = 1_000_000;
  });

  it('allows `limit` attempts per window and says when the next one may come', () => {
    const rl = new RateLimiter({ limit: 3, windowMs: 60_000, clock });
    const steps: Array<[number, boolean, number, number]> = [
      // [advance ms, allowed, remaining, retryAfterMs]
      [0, true, 2, 0],
      [10_000, true, 1, 0],
      [10_000, true, 0, 0],
      [10_000, false, 0, 30_000], // the first attempt (t=0) leaves the window at t=60 s
      [29_999, false, 0, 1],
      [1, true, 0, 0], // t=60 s: the first left, one slot free
      [0, false, 0, 10_000],
    ];
    for (const [i, [advance, allowed, remaining, retryAfterMs]] of steps.entries()) {
      now += advance;
      expect(rl.attempt('ip|VBI-1'), `step ${i}`).to.deep.equal({ allowed, remaining, retryAfterMs });
    }
  });

  it('keeps keys apart and forgets a key on reset', () => {
    const rl = new RateLimiter({ limit: 1, windowMs: 1_000, clock });
    expect(rl.attempt('a').allowed).to.equal(true);
    expect(rl.attempt('a').allowed).to.equal(false);
    expect(rl.attempt('b').allowed).to.equal(true);
    rl.reset('a');
    expect(rl.attempt('a').allowed).to.equal(true);
  });

  it('sweeps idle keys and bounds the number of keys', () => {
    const rl = new RateLimiter({ limit: 2, windowMs: 1_000, clock, maxKeys: 3 });
    for (const k of ['a', 'b', 'c', 'd']) rl.attempt(k);
    expect(rl.size).to.equal(3);
    expect(rl.attempt('a').remaining).to.equal(1); // 'a' was evicted first, so it starts afresh
    now += 1_001;
    rl.attempt('e');
    expect(rl.size).to.equal(1);
  });

  it('refuses bad configuration', () => {
    expect(() => new RateLimiter({ limit: 0, windowMs: 1 })).to.throw(/limit/);
    expect(() => new RateLimiter({ limit: 1, windowMs: 0 })).to.throw(/windowMs/);
  });

  describe('middleware', () => {
    let srv: TestServer;
    before(async () => {
      const app = express();
      app.use(jsonBody());
      const limiter = new RateLimiter({ limit: 2, windowMs: 60_000, clock: () => now });
      app.post('/v1/sessions', limiter.middleware(), (req, res) => void res.json({ key: ipAndMeterKey(req) }));
      app.post('/v1/meters/:meterId/challenge', limiter.middleware(), (req, res) => void res.json({ key: ipAndMeterKey(req) }));
      app.use(errorHandler());
      srv = await listen(app);
    });
    after(() => srv.close());

    it('answers 429 RATE_LIMITED with Retry-After once the window is full, per IP and meter', async () => {
      const login = (meterId: string) => srv.request('/v1/sessions', { body: { meterId, response: 'x' } });
      const a1 = await login('VBI-1');
      expect(a1.json.key).to.equal('127.0.0.1|VBI-1');
      expect(a1.headers.get('ratelimit-remaining')).to.equal('1');
      await login('VBI-1');
      now += 15_500;
      const refused = await login('VBI-1');
      expect(refused.status).to.equal(429);
      expect(refused.json.error.code).to.equal('RATE_LIMITED');
      expect(refused.headers.get('retry-after')).to.equal('45'); // 44.5 s rounded up
      expect(refused.json.error.details).to.deep.equal({ retryAfterSeconds: 45 });
      expect((await login('VBI-2')).status).to.equal(200);
      const byParam = await srv.request('/v1/meters/VBI-3/challenge', { body: {} });
      expect(byParam.json.key).to.equal('127.0.0.1|VBI-3');
    });
  });
});
