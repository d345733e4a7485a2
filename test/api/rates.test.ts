import { expect } from 'chai';
import { VbiError } from '@vbi/core/errors';
import { computePostage, PostageRequest, postageRequestSchema, rateTableAt } from '@vbi/core/rates/postage';
import { RateTable, validateRateTable, validateRateTables } from '@vbi/core/rates/rate-table';
import { SHIPPED_RATE_TABLES } from '@vbi/core/rates/shipped-tables';
import { validate } from '@vbi/server/api/validation';

function quote(req: PostageRequest, tables?: readonly RateTable[]): unknown {
  try {
    const q = computePostage(req, tables);
    return { postage: q.postage, table: `${q.rateTableId}/${q.rateTableVersion} ${q.rateTableName}`, category: q.rateCategory, step: q.weightStepOz };
  } catch (e) {
    if (e instanceof VbiError) return { code: e.code, status: e.status, field: e.details?.field };
    throw e;
  }
}

const JAN_2026 = new Date('2026-03-01T12:00:00Z');
const AUG_2025 = new Date('2025-08-01T12:00:00Z');

describe('postage rates', () => {
  it('ships valid tables, oldest first, and compiled code finds them', () => {
    expect(SHIPPED_RATE_TABLES.map((t) => `${t.id}/${t.version} ${t.name}`)).to.deep.equal(['1/1 2025-07', '1/2 2026-01']);
    expect(rateTableAt(JAN_2026).name).to.equal('2026-01');
  });

  const cases: Array<[string, PostageRequest, unknown]> = [
    ['letter, 1 oz', { mailClass: 'first-class-letter', weightOz: 1, at: JAN_2026 }, { postage: 740, table: '1/2 2026-01', category: 'FCL', step: 1 }],
    ['letter, 0.2 oz pays the first step', { mailClass: 'first-class-letter', weightOz: 0.2, at: JAN_2026 }, { postage: 740, table: '1/2 2026-01', category: 'FCL', step: 1 }],
    ['letter, 1.01 oz pays the 2 oz step', { mailClass: 'first-class-letter', weightOz: 1.01, at: JAN_2026 }, { postage: 1030, table: '1/2 2026-01', category: 'FCL', step: 2 }],
    ['letter, 3.5 oz (maximum)', { mailClass: 'first-class-letter', weightOz: 3.5, at: JAN_2026 }, { postage: 1610, table: '1/2 2026-01', category: 'FCL', step: 3.5 }],
    ['letter, zone is ignored', { mailClass: 'first-class-letter', weightOz: 2, zone: 8, at: JAN_2026 }, { postage: 1030, table: '1/2 2026-01', category: 'FCL', step: 2 }],
    ['flat, 13 oz', { mailClass: 'first-class-flat', weightOz: 13, at: JAN_2026 }, { postage: 5110, table: '1/2 2026-01', category: 'FCF', step: 13 }],
    ['priority, 1 lb, zone 1', { mailClass: 'priority-mail', weightOz: 16, zone: 1, at: JAN_2026 }, { postage: 10500, table: '1/2 2026-01', category: 'PM', step: 16 }],
    ['priority, 1 lb, zones 1 and 2 share a price', { mailClass: 'priority-mail', weightOz: 10, zone: 2, at: JAN_2026 }, { postage: 10500, table: '1/2 2026-01', category: 'PM', step: 16 }],
    ['priority, 1.5 lb, zone 9', { mailClass: 'priority-mail', weightOz: 24, zone: 9, at: JAN_2026 }, { postage: 18860, table: '1/2 2026-01', category: 'PM', step: 32 }],
    ['priority, 70 lb, zone 9', { mailClass: 'priority-mail', weightOz: 1120, zone: 9, at: JAN_2026 }, { postage: 308080, table: '1/2 2026-01', category: 'PM', step: 1120 }],
    ['ground advantage, 4 oz, zone 3', { mailClass: 'ground-advantage', weightOz: 4, zone: 3, at: JAN_2026 }, { postage: 5670, table: '1/2 2026-01', category: 'GA', step: 4 }],
    ['ground advantage, 15.999 oz step', { mailClass: 'ground-advantage', weightOz: 15.5, zone: 1, at: JAN_2026 }, { postage: quoteOf('ground-advantage', 15.999, 1), table: '1/2 2026-01', category: 'GA', step: 15.999 }],
    ['earlier table before 2026-01-18', { mailClass: 'priority-mail', weightOz: 16, zone: 1, at: AUG_2025 }, { postage: 9850, table: '1/1 2025-07', category: 'PM', step: 16 }],
    ['the new table from its first instant', { mailClass: 'priority-mail', weightOz: 16, zone: 1, at: new Date('2026-01-18T00:00:00Z') }, { postage: 10500, table: '1/2 2026-01', category: 'PM', step: 16 }],
    ['the old table until the instant before', { mailClass: 'priority-mail', weightOz: 16, zone: 1, at: new Date('2026-01-17T23:59:59.999Z') }, { postage: 9850, table: '1/1 2025-07', category: 'PM', step: 16 }],
    ['unknown class', { mailClass: 'carrier-pigeon', weightOz: 1, at: JAN_2026 }, { code: 'RATE_NOT_FOUND', status: 400, field: 'mailClass' }],
    ['overweight letter', { mailClass: 'first-class-letter', weightOz: 3.51, at: JAN_2026 }, { code: 'RATE_NOT_FOUND', status: 400, field: 'weightOz' }],
    ['overweight parcel', { mailClass: 'priority-mail', weightOz: 1120.1, zone: 1, at: JAN_2026 }, { code: 'RATE_NOT_FOUND', status: 400, field: 'weightOz' }],
    ['zoned class without zone', { mailClass: 'ground-advantage', weightOz: 4, at: JAN_2026 }, { code: 'RATE_NOT_FOUND', status: 400, field: 'zone' }],
    ['before any table', { mailClass: 'first-class-letter', weightOz: 1, at: new Date('2024-01-01T00:00:00Z') }, { code: 'RATE_NOT_FOUND', status: 400, field: 'at' }],
    ['zero weight', { mailClass: 'first-class-letter', weightOz: 0, at: JAN_2026 }, { code: 'BAD_REQUEST', status: 400, field: 'weightOz' }],
    ['NaN weight', { mailClass: 'first-class-letter', weightOz: NaN, at: JAN_2026 }, { code: 'BAD_REQUEST', status: 400, field: 'weightOz' }],
    ['zone 10', { mailClass: 'priority-mail', weightOz: 1, zone: 10, at: JAN_2026 }, { code: 'BAD_REQUEST', status: 400, field: 'zone' }],
    ['zone 2.5', { mailClass: 'priority-mail', weightOz: 1, zone: 2.5, at: JAN_2026 }, { code: 'BAD_REQUEST', status: 400, field: 'zone' }],
    ['an invalid date', { mailClass: 'priority-mail', weightOz: 1, zone: 2, at: new Date('nope') }, { code: 'BAD_REQUEST', status: 400, field: 'at' }],
  ];
  for (const [name, req, want] of cases) {
    it(name, () => {
      expect(quote(req)).to.deep.equal(want);
    });
  }

  it('prices are integer mills, never floats', () => {
    for (const t of SHIPPED_RATE_TABLES) {
      for (const c of t.classes) {
        for (const s of c.steps) for (const p of s.prices ?? [s.price]) expect(Number.isSafeInteger(p), `${t.name} ${c.class} ${s.upToOz}`).to.equal(true);
      }
    }
  });

  describe('table validation', () => {
    const base = (): RateTable => ({
      id: 7, version: 1, name: 't', effectiveFrom: '2030-01-01T00:00:00Z', currency: 'USD',
      classes: [{ class: 'x', category: 'X', description: 'x', zoned: false, maxWeightOz: 2, steps: [{ upToOz: 1, price: 100 }, { upToOz: 2, price: 200 }] }],
    });
    const broken: Array<[string, (t: RateTable) => void, RegExp]> = [
      ['a float price', (t) => (t.classes[0].steps[0].price = 1.5), /integer mills/],
      ['decreasing steps', (t) => (t.classes[0].steps[1].upToOz = 0.5), /must increase/],
      ['a wrong maximum', (t) => (t.classes[0].maxWeightOz = 3), /maxWeightOz/],
      ['a version over one byte', (t) => (t.version = 256), /version/],
      ['a long category', (t) => (t.classes[0].category = 'ABCDE'), /category/],
      ['a zoned step with 8 zones', (t) => Object.assign(t.classes[0], { zoned: true, steps: [{ upToOz: 2, prices: [1, 2, 3, 4, 5, 6, 7, 8] }] }), /zones 1\.\.9/],
      ['a bad date', (t) => (t.effectiveFrom = 'soon'), /effectiveFrom/],
    ];
    for (const [name, breakIt, msg] of broken) {
      it(`refuses ${name}`, () => {
        const t = base();
        breakIt(t);
        expect(() => validateRateTable(t)).to.throw(msg);
      });
    }

    it('refuses versions that do not increase with the effective date, and duplicate instants', () => {
      const older = { ...base(), version: 2, effectiveFrom: '2029-01-01T00:00:00Z' };
      expect(() => validateRateTables([base(), older])).to.throw(/does not increase/);
      expect(() => validateRateTables([base(), { ...base(), id: 8 }])).to.throw(/same instant/);
    });

    it('uses injected tables', () => {
      const t = validateRateTables([base()]);
      expect(quote({ mailClass: 'x', weightOz: 1.5, at: new Date('2031-01-01') }, t)).to.deep.equal({ postage: 200, table: '7/1 t', category: 'X', step: 2 });
    });
  });

  describe('request schema', () => {
    const ok: unknown[] = [
      { mailClass: 'priority-mail', weightOz: 12.5, zone: 4 },
      { mailClass: 'first-class-letter', weightOz: 1, at: '2026-02-01' },
      { mailClass: 'first-class-letter', weightOz: 1, at: '2026-02-01T10:00:00Z' },
    ];
    const bad: unknown[] = [
      { mailClass: 'priority-mail', weightOz: 0 },
      { mailClass: 'priority-mail', weightOz: 1, zone: 0 },
      { mailClass: 'priority-mail', weightOz: '1' },
      { mailClass: 'Priority Mail', weightOz: 1 },
      { mailClass: 'priority-mail', weightOz: 1, at: 'tomorrow' },
      { mailClass: 'priority-mail', weightOz: 1, postage: 5 },
    ];
    for (const b of ok) it(`accepts ${JSON.stringify(b)}`, () => void validate(postageRequestSchema, b, 'body'));
    for (const b of bad) it(`refuses ${JSON.stringify(b)}`, () => expect(() => validate(postageRequestSchema, b, 'body')).to.throw(VbiError));
  });
});

/** The shipped price of one step of the 2026-01 table, read from the data. */
function quoteOf(mailClass: string, upToOz: number, zone: number): number {
  const t = SHIPPED_RATE_TABLES.find((x) => x.name === '2026-01') as RateTable;
  const step = t.classes.find((c) => c.class === mailClass)?.steps.find((s) => s.upToOz === upToOz);
  return (step?.prices as number[])[zone - 1];
}
