import { expect } from 'chai';
import express from 'express';
import { VbiError } from '@vbi/core/errors';
import { errorHandler } from '@vbi/server/api/http-errors';
import { jsonBody } from '@vbi/server/api/json-body';
import { meterIdSchema, millsSchema, objectSchema, validate, validateBody, validateParams, validateQuery } from '@vbi/server/api/validation';
import { listen, TestServer } from '../helpers/http-server';

function issuesOf(fn: () => unknown): Array<{ path: string; message: string }> | 'OK' {
  try {
    fn();
    return 'OK';
  } catch (e) {
    if (!(e instanceof VbiError)) throw e;
    expect(e.code).to.equal('VALIDATION_FAILED');
    expect(e.status).to.equal(400);
    return (e.details as { errors: Array<{ path: string; message: string }> }).errors;
  }
}

const purchase = objectSchema(
  {
    meterId: meterIdSchema,
    amount: millsSchema,
    method: objectSchema({ kind: { enum: ['card', 'ach', 'check'] }, token: { type: 'string', minLength: 1, maxLength: 64 } }),
    note: { type: 'string', maxLength: 20 },
  },
  ['meterId', 'amount', 'method'],
);

describe('request validation (JSON Schema, ajv)', () => {
  describe('money and meter ids', () => {
    const mills: Array<[unknown, boolean]> = [
      [1, true],
      [680, true],
      [1_000_000_000_000, true],
      [0, false],
      [-5, false],
      [1.5, false],
      ['680', false],
      [1_000_000_000_001, false],
      [null, false],
      [true, false],
    ];
    for (const [value, ok] of mills) {
      it(`millsSchema ${ok ? 'accepts' : 'refuses'} ${JSON.stringify(value)}`, () => {
        const r = issuesOf(() => validate(millsSchema, value, 'body'));
        if (ok) expect(r).to.equal('OK');
        else expect(r).to.be.an('array').with.length(1);
      });
    }

    const ids: Array<[string, boolean]> = [
      ['VBI-0A1B2C3D4E', true],
      ['M', true],
      ['A'.repeat(32), true],
      ['A'.repeat(33), false],
      ['-ABC', false],
      ['vbi-lower', false],
      ['VBI_1', false],
      ['', false],
    ];
    for (const [id, ok] of ids) {
      it(`meterIdSchema ${ok ? 'accepts' : 'refuses'} '${id}'`, () => {
        expect(issuesOf(() => validate(meterIdSchema, id, 'params')) === 'OK').to.equal(ok);
      });
    }
  });

  describe('objects', () => {
    const good = { meterId: 'VBI-1', amount: 5000, method: { kind: 'card', token: 'tok_approve' } };
    const cases: Array<{ name: string; body: unknown; issues: Array<{ path: string; message: string }> | 'OK' }> = [
      { name: 'a valid body', body: good, issues: 'OK' },
      { name: 'an unknown top-level field', body: { ...good, admin: true }, issues: [{ path: '/admin', message: 'unknown field' }] },
      { name: 'an unknown nested field', body: { ...good, method: { ...good.method, cvv: '123' } }, issues: [{ path: '/method/cvv', message: 'unknown field' }] },
      { name: 'a missing field', body: { meterId: 'VBI-1', method: good.method }, issues: [{ path: '/amount', message: 'is required' }] },
      { name: 'a float amount', body: { ...good, amount: 12.5 }, issues: [{ path: '/amount', message: 'must be integer' }] },
      { name: 'an amount as a string', body: { ...good, amount: '5000' }, issues: [{ path: '/amount', message: 'must be integer' }] },
      { name: 'a bad enum', body: { ...good, method: { kind: 'cash', token: 't' } }, issues: [{ path: '/method/kind', message: 'must be equal to one of the allowed values' }] },
      { name: 'no body at all', body: undefined, issues: [{ path: '', message: 'must be object' }] },
      { name: 'an array', body: [good], issues: [{ path: '', message: 'must be object' }] },
      {
        name: 'several problems at once',
        body: { meterId: 'bad id', amount: 0, extra: 1, method: good.method },
        issues: [
          { path: '/extra', message: 'unknown field' },
          { path: '/meterId', message: 'must match pattern "^[A-Z0-9][A-Z0-9-]{0,31}$"' },
          { path: '/amount', message: 'must be >= 1' },
        ],
      },
    ];
    for (const c of cases) {
      it(`${c.issues === 'OK' ? 'accepts' : 'refuses'} ${c.name}`, () => {
        const r = issuesOf(() => validate(purchase, c.body, 'body'));
        if (c.issues === 'OK') expect(r).to.equal('OK');
        else expect(r).to.have.deep.members(c.issues);
      });
    }

    it('names the part and the first problem in the message', () => {
      try {
        validate(purchase, { ...good, amount: 1.5 }, 'body');
        expect.fail('no error');
      } catch (e) {
        expect((e as VbiError).message).to.equal('body /amount: must be integer');
        expect((e as VbiError).details).to.deep.equal({ in: 'body', errors: [{ path: '/amount', message: 'must be integer' }] });
      }
    });

    it('refuses open object schemas at definition time', () => {
      expect(() => validateBody({ type: 'object', properties: { a: { type: 'string' } } })).to.throw(/additionalProperties/);
      expect(() => validateBody(objectSchema({ inner: { type: 'object', properties: {} } }))).to.throw(/properties\/inner/);
    });
  });

  describe('middleware over HTTP', () => {
    let srv: TestServer;
    before(async () => {
      const app = express();
      app.use(jsonBody());
      app.post('/v1/meters/:meterId/purchases', validateParams(objectSchema({ meterId: meterIdSchema })), validateBody(purchase), (req, res) => {
        res.json({ params: req.params, body: req.body });
      });
      app.get(
        '/v1/meters/:meterId/indicia/:indiciumId',
        validateParams(objectSchema({ meterId: meterIdSchema, indiciumId: { type: 'integer', minimum: 1 } })),
        validateQuery(objectSchema({ limit: { type: 'integer', minimum: 1, maximum: 100 }, kinds: { type: 'array', items: { type: 'string' } } }, [])),
        (req, res) => {
          res.json({ params: req.params, query: req.query });
        },
      );
      app.use(errorHandler());
      srv = await listen(app);
    });
    after(() => srv.close());

    it('passes a valid body through', async () => {
      const body = { meterId: 'VBI-1', amount: 5000, method: { kind: 'ach', token: 'tok_approve' } };
      const r = await srv.request('/v1/meters/VBI-1/purchases', { body });
      expect(r.status).to.equal(200);
      expect(r.json.body).to.deep.equal(body);
    });

    it('answers 400 VALIDATION_FAILED with details for an unknown field', async () => {
      const r = await srv.request('/v1/meters/VBI-1/purchases', { body: { meterId: 'VBI-1', amount: 5000, method: { kind: 'card', token: 't' }, discount: 10 } });
      expect(r.status).to.equal(400);
      expect(r.json.error.code).to.equal('VALIDATION_FAILED');
      expect(r.json.error.details).to.deep.equal({ in: 'body', errors: [{ path: '/discount', message: 'unknown field' }] });
    });

    it('validates path parameters', async () => {
      const r = await srv.request('/v1/meters/bad_id/purchases', { body: {} });
      expect(r.status).to.equal(400);
      expect(r.json.error.details.in).to.equal('params');
    });

    it('converts query and path parameters to the schema types', async () => {
      const r = await srv.request('/v1/meters/VBI-1/indicia/42?limit=5&kinds=postage&kinds=correction');
      expect(r.status).to.equal(200);
      expect(r.json).to.deep.equal({ params: { meterId: 'VBI-1', indiciumId: 42 }, query: { limit: 5, kinds: ['postage', 'correction'] } });
    });

    it('refuses unknown and mistyped query parameters', async () => {
      const r = await srv.request('/v1/meters/VBI-1/indicia/42?limit=many&debug=1');
      expect(r.status).to.equal(400);
      expect(r.json.error.details.in).to.equal('query');
      expect(r.json.error.details.errors).to.have.deep.members([
        { path: '/debug', message: 'unknown field' },
        { path: '/limit', message: 'must be integer' },
      ]);
    });
  });
});
