import { expect } from 'chai';
import express from 'express';
import { vbiError } from '@vbi/core/errors';
import { Database } from '@vbi/server/db/database';
import { errorHandler } from '@vbi/server/api/http-errors';
import { jsonBody } from '@vbi/server/api/json-body';
import { ApiRegistry } from '@vbi/server/api/openapi';
import { canonicalJson, idempotency, idempotencyContext, purgeIdempotencyKeys, requestHash } from '@vbi/server/api/idempotency';
import { millsSchema, objectSchema } from '@vbi/server/api/validation';
import { freshDatabase } from '../helpers/db';
import { listen, TestServer } from '../helpers/http-server';

/** A deferred promise, to hold a handler mid-flight. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('idempotency keys (PostgreSQL)', function () {
  this.timeout(60_000);
  let db: Database;
  let srv: TestServer;
  const runs: Record<string, number> = {};
  let gate: { promise: Promise<void>; resolve: () => void } | undefined;
  let entered: (() => void) | undefined;
  const logged: string[] = [];
  const resumed: Record<string, boolean | undefined> = {};
  const DEAD = 'dead'.repeat(8);
  const ALIVE = 'a11e'.repeat(8);

  before(async () => {
    db = await freshDatabase();
    const app = express();
    app.use(jsonBody());
    // Stand-in for authentication: the meter id comes from a header here.
    const auth: express.RequestHandler = (req, res, next) => {
      res.locals.meterId = req.get('X-Meter') ?? 'VBI-A';
      next();
    };
    const api = new ApiRegistry(app, { title: 't', version: '1' });
    const idem = idempotency({
      db: db.knex, scope: (req) => (req.res as express.Response).locals.meterId as string, log: (l) => logged.push(l),
      ownerAlive: async (owner) => owner !== DEAD,
    });
    api.defineRoute<{ amount: number; outcome?: string }>({
      method: 'post',
      path: '/v1/meters/:meterId/purchases',
      summary: 'purchase',
      body: objectSchema({ amount: millsSchema, outcome: { enum: ['ok', 'declined', 'crash', 'bug', 'slow', 'crash-then-slow'] } }, ['amount']),
      before: [auth],
      middleware: [idem],
      responses: { 201: { description: 'done' } },
      handler: async (req, res) => {
        const tag = `${req.params.meterId}:${req.body.amount}:${req.body.outcome ?? 'ok'}`;
        runs[tag] = (runs[tag] ?? 0) + 1;
        resumed[tag] = idempotencyContext(res)?.resumed;
        switch (req.body.outcome) {
          case 'declined':
            throw vbiError('PAYMENT_DECLINED', 'the payment was declined: credit_denied', { reason: 'credit_denied' });
          case 'crash':
            throw vbiError('NO_MODULE');
          case 'bug':
            throw new TypeError('undefined is not a function');
          case 'slow':
            entered?.();
            await gate?.promise;
            break;
          case 'crash-then-slow':
            if (runs[tag] === 1) throw vbiError('NO_MODULE');
            entered?.();
            await gate?.promise;
            break;
          default:
        }
        return { purchaseId: runs[tag], amount: req.body.amount, list: [3, 1, 2] };
      },
    });
    api.defineRoute<{ label: string }>({
      method: 'post',
      path: '/v1/meters/:meterId/print',
      summary: 'print (answers with res.json itself)',
      body: objectSchema({ label: { type: 'string' } }),
      before: [auth],
      middleware: [idem],
      responses: { 200: { description: 'printed' } },
      handler: (req, res) => {
        runs.print = (runs.print ?? 0) + 1;
        return res.status(200).json({ printed: req.body.label });
      },
    });
    app.use(errorHandler({ log: () => undefined }));
    srv = await listen(app);
  });
  after(() => srv.close());
  beforeEach(() => {
    for (const k of Object.keys(runs)) delete runs[k];
    logged.length = 0;
  });

  const post = (key: string | undefined, body: unknown, opts: { meter?: string; path?: string } = {}) =>
    srv.request(opts.path ?? '/v1/meters/VBI-A/purchases', {
      body,
      headers: { ...(key !== undefined ? { 'Idempotency-Key': key } : {}), ...(opts.meter ? { 'X-Meter': opts.meter } : {}) },
    });

  it('runs the first request and replays its answer for a retry, without running again', async () => {
    const first = await post('k-replay', { amount: 500 });
    expect(first.status).to.equal(201);
    expect(first.headers.get('idempotent-replay')).to.equal(null);
    const again = await post('k-replay', { amount: 500 });
    expect(again.status).to.equal(201);
    expect(again.headers.get('idempotent-replay')).to.equal('true');
    expect(again.json).to.deep.equal(first.json);
    expect(runs['VBI-A:500:ok']).to.equal(1);
    const row = await db.knex('idempotency_keys').where({ scope: 'VBI-A', key: 'k-replay' }).first();
    expect(row).to.deep.include({ state: 'done', status: 201 });
    expect(row.request_hash).to.have.length(32);
  });

  it('treats the same JSON with other key order or spacing as the same request', async () => {
    await srv.request('/v1/meters/VBI-A/purchases', { rawBody: '{"amount":700,"outcome":"ok"}', headers: { 'content-type': 'application/json', 'Idempotency-Key': 'k-order' } });
    const r = await srv.request('/v1/meters/VBI-A/purchases', { rawBody: '{ "outcome": "ok",  "amount": 700 }', headers: { 'content-type': 'application/json', 'Idempotency-Key': 'k-order' } });
    expect(r.headers.get('idempotent-replay')).to.equal('true');
    expect(runs['VBI-A:700:ok']).to.equal(1);
    expect(canonicalJson({ b: 1, a: { d: [2, 1], c: null } })).to.equal('{"a":{"c":null,"d":[2,1]},"b":1}');
  });

  it('refuses the same key with another body or path: 409 IDEMPOTENCY_KEY_REUSED', async () => {
    await post('k-reuse', { amount: 500 });
    const other = await post('k-reuse', { amount: 501 });
    expect(other.status).to.equal(409);
    expect(other.json.error.code).to.equal('IDEMPOTENCY_KEY_REUSED');
    const otherPath = await post('k-reuse', { amount: 500 }, { path: '/v1/meters/VBI-B/purchases' });
    expect(otherPath.json.error.code).to.equal('IDEMPOTENCY_KEY_REUSED');
    expect(runs['VBI-A:501:ok']).to.equal(undefined);
  });

  it('keeps the keys of different scopes (meters) apart', async () => {
    const a = await post('k-scope', { amount: 900 }, { meter: 'VBI-A' });
    const b = await post('k-scope', { amount: 900 }, { meter: 'VBI-B' });
    expect(a.headers.get('idempotent-replay')).to.equal(null);
    expect(b.headers.get('idempotent-replay')).to.equal(null);
    expect(runs['VBI-A:900:ok']).to.equal(2);
  });

  const badKeys: Array<[string, string | undefined]> = [
    ['missing', undefined],
    ['too long', 'k'.repeat(129)],
    ['not ASCII', 'clé'],
  ];
  for (const [name, key] of badKeys) {
    it(`answers 400 IDEMPOTENCY_KEY_REQUIRED for a ${name} key`, async () => {
      const r = await post(key, { amount: 500 });
      expect(r.status).to.equal(400);
      expect(r.json.error.code).to.equal('IDEMPOTENCY_KEY_REQUIRED');
      expect(runs).to.deep.equal({});
    });
  }

  it('accepts a key of exactly 128 printable characters', async () => {
    const r = await post(`${'~'.repeat(64)} ${'!'.repeat(63)}`, { amount: 128 });
    expect(r.status).to.equal(201);
  });

  it('does not reserve a key for a request that fails validation', async () => {
    const bad = await post('k-valid', { amount: 0 });
    expect(bad.json.error.code).to.equal('VALIDATION_FAILED');
    const good = await post('k-valid', { amount: 10 });
    expect(good.status).to.equal(201);
    expect(good.headers.get('idempotent-replay')).to.equal(null);
  });

  it('stores a 4xx VbiError and replays it without running the handler', async () => {
    const first = await post('k-declined', { amount: 500, outcome: 'declined' });
    expect(first.status).to.equal(402);
    const again = await post('k-declined', { amount: 500, outcome: 'declined' });
    expect(again.status).to.equal(402);
    expect(again.headers.get('idempotent-replay')).to.equal('true');
    expect(again.json).to.deep.equal(first.json);
    expect(again.json.error).to.deep.include({ code: 'PAYMENT_DECLINED', details: { reason: 'credit_denied' } });
    expect(runs['VBI-A:500:declined']).to.equal(1);
  });

  for (const outcome of ['crash', 'bug'] as const) {
    it(`releases the key after a ${outcome === 'crash' ? '5xx VbiError' : 'unexpected error'}, so a retry runs again (and resumes)`, async () => {
      const first = await post(`k-${outcome}`, { amount: 500, outcome });
      expect(first.status).to.equal(outcome === 'crash' ? 503 : 500);
      const row = await db.knex('idempotency_keys').where({ key: `k-${outcome}` }).first('state', 'owner');
      expect(row).to.deep.equal({ state: 'in_progress', owner: null });
      const again = await post(`k-${outcome}`, { amount: 500, outcome });
      expect(again.headers.get('idempotent-replay')).to.equal(null);
      expect(runs[`VBI-A:500:${outcome}`]).to.equal(2);
    });
  }

  it('a request left in progress by a dead process is taken over by its retry, which resumes; a live owner keeps it', async () => {
    const hash = (amount: number) => requestHash({ method: 'POST', originalUrl: '/v1/meters/VBI-A/purchases', query: {}, body: { amount } });
    await db.knex('idempotency_keys').insert([
      { scope: 'VBI-A', key: 'k-dead', request_hash: hash(7001), state: 'in_progress', owner: DEAD },
      { scope: 'VBI-A', key: 'k-alive', request_hash: hash(7002), state: 'in_progress', owner: ALIVE },
    ]);
    const stillRunning = await post('k-alive', { amount: 7002 });
    expect(stillRunning.json.error.code).to.equal('IDEMPOTENCY_IN_PROGRESS');
    expect(runs['VBI-A:7002:ok']).to.equal(undefined);
    const other = await post('k-dead', { amount: 7009 });
    expect(other.json.error.code).to.equal('IDEMPOTENCY_KEY_REUSED');
    const taken = await post('k-dead', { amount: 7001 });
    expect(taken.status).to.equal(201);
    expect(taken.headers.get('idempotent-replay')).to.equal(null);
    expect(resumed['VBI-A:7001:ok']).to.equal(true);
    const row = await db.knex('idempotency_keys').where({ key: 'k-dead' }).first('state', 'owner');
    expect(row.state).to.equal('done');
    expect(row.owner).to.match(/^[0-9a-f]{32}$/).and.not.equal(DEAD);
    const replay = await post('k-dead', { amount: 7001 });
    expect(replay.headers.get('idempotent-replay')).to.equal('true');
    expect(runs['VBI-A:7001:ok']).to.equal(1);
  });

  it('a release delayed by a database outage never clears the retry that took the row over meanwhile: its answer is recorded', async () => {
    // the database refuses the first run's release (owner NULL) as if it were away
    await db.knex.raw(`CREATE FUNCTION refuse_release() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.owner IS NULL THEN RAISE EXCEPTION 'database away'; END IF; RETURN NEW; END $$`);
    await db.knex.raw('CREATE TRIGGER refuse_release BEFORE UPDATE ON idempotency_keys FOR EACH ROW EXECUTE FUNCTION refuse_release()');
    try {
      const first = await post('k-outage', { amount: 8001, outcome: 'crash-then-slow' });
      expect(first.status).to.equal(503);
      expect(logged.join('\n')).to.contain('database away');
      // the retry takes the row over (its owner is this process, which no longer runs it) and is still running ...
      gate = deferred();
      const inside = new Promise<void>((r) => (entered = r));
      const retry = post('k-outage', { amount: 8001, outcome: 'crash-then-slow' });
      await inside;
      // ... when the database is back and the first run's delayed release comes round
      await db.knex.raw('DROP TRIGGER refuse_release ON idempotency_keys');
      await new Promise((r) => setTimeout(r, 1_500));
      expect(await db.knex('idempotency_keys').where({ key: 'k-outage' }).first('state', 'owner')).to.deep.include({ state: 'in_progress' })
        .and.to.have.property('owner').that.matches(/^[0-9a-f]{32}$/);
      gate.resolve();
      expect((await retry).status).to.equal(201);
      expect(await db.knex('idempotency_keys').where({ key: 'k-outage' }).first('state', 'status')).to.deep.equal({ state: 'done', status: 201 });
      const replay = await post('k-outage', { amount: 8001, outcome: 'crash-then-slow' });
      expect(replay.headers.get('idempotent-replay')).to.equal('true');
      expect(runs['VBI-A:8001:crash-then-slow']).to.equal(2);
    } finally {
      gate = undefined;
      entered = undefined;
      await db.knex.raw('DROP TRIGGER IF EXISTS refuse_release ON idempotency_keys');
      await db.knex.raw('DROP FUNCTION refuse_release()');
    }
  });

  it('answers a concurrent duplicate with 409 IDEMPOTENCY_IN_PROGRESS, then replays once done', async () => {
    gate = deferred();
    const inside = new Promise<void>((r) => (entered = r));
    const first = post('k-slow', { amount: 500, outcome: 'slow' });
    await inside;
    const dup = await post('k-slow', { amount: 500, outcome: 'slow' });
    expect(dup.status).to.equal(409);
    expect(dup.json.error.code).to.equal('IDEMPOTENCY_IN_PROGRESS');
    const dupOtherBody = await post('k-slow', { amount: 501, outcome: 'slow' });
    expect(dupOtherBody.json.error.code).to.equal('IDEMPOTENCY_KEY_REUSED');
    gate.resolve();
    expect((await first).status).to.equal(201);
    const after = await post('k-slow', { amount: 500, outcome: 'slow' });
    expect(after.headers.get('idempotent-replay')).to.equal('true');
    expect(runs['VBI-A:500:slow']).to.equal(1);
    gate = undefined;
    entered = undefined;
  });

  it('lets exactly one of many simultaneous first requests run', async () => {
    const answers = await Promise.all(Array.from({ length: 8 }, () => post('k-race', { amount: 4242 })));
    const statuses = answers.map((a) => a.status);
    expect(runs['VBI-A:4242:ok']).to.equal(1);
    expect(statuses.filter((s) => s === 201).length).to.be.at.least(1);
    expect(statuses.every((s) => s === 201 || s === 409)).to.equal(true);
    expect(answers.filter((a) => a.status === 201 && a.headers.get('idempotent-replay') === null)).to.have.length(1);
  });

  it('works with handlers that answer with res.json() themselves', async () => {
    const first = await srv.request('/v1/meters/VBI-A/print', { body: { label: 'L1' }, headers: { 'Idempotency-Key': 'k-print' } });
    const again = await srv.request('/v1/meters/VBI-A/print', { body: { label: 'L1' }, headers: { 'Idempotency-Key': 'k-print' } });
    expect(first.json).to.deep.equal({ printed: 'L1' });
    expect(again.json).to.deep.equal({ printed: 'L1' });
    expect(again.headers.get('idempotent-replay')).to.equal('true');
    expect(runs.print).to.equal(1);
    expect(logged).to.deep.equal([]);
  });

  it('purges old done keys, and in-progress ones only when asked', async () => {
    await db.knex('idempotency_keys').insert({ scope: 'VBI-P', key: 'stuck', request_hash: Buffer.alloc(32), state: 'in_progress', created_at: new Date('2020-01-01') });
    await db.knex('idempotency_keys').insert({ scope: 'VBI-P', key: 'old', request_hash: Buffer.alloc(32), state: 'done', status: 201, response: '{}', created_at: new Date('2020-01-01') });
    expect(await purgeIdempotencyKeys({ db: db.knex, olderThan: new Date('2021-01-01') })).to.equal(1);
    expect(await purgeIdempotencyKeys({ db: db.knex, olderThan: new Date('2021-01-01'), includeInProgress: true })).to.equal(1);
    expect(await db.knex('idempotency_keys').where({ scope: 'VBI-P' })).to.deep.equal([]);
  });

  it('documents the header in the OpenAPI operation', () => {
    const mw = idempotency({ db: db.knex, scope: () => 'x' });
    expect(mw.openapi?.parameters?.[0]).to.deep.include({ name: 'Idempotency-Key', in: 'header', required: true });
  });
});
