/**
 * A versioned postage rate table, shipped as data (./tables/*.json). The id and version go into
 * every indicium (one byte each, packages/core/src/indicium/fields.ts) so a verifier knows which prices the
 * postage was computed from: never reuse an (id, version) pair for different prices, and never
 * edit a table once it has been in effect; add a new file with the next version instead.
 */
export interface RateTable {
  /** Rate table family, 0..255 (indicium field rateTableId). */
  id: number;
  /** Version within the family, 0..255, increasing with effectiveFrom (indicium field rateTableVersion). */
  version: number;
  /** Human name, e.g. '2026-01'. */
  name: string;
  /** ISO 8601 instant from which the table prices mail; it stays in effect until the next table's. */
  effectiveFrom: string;
  currency: string;
  note?: string;
  classes: MailClassRates[];
}

export interface MailClassRates {
  /** Stable name used by the API, e.g. 'first-class-letter'. */
  class: string;
  /** Rate category code printed in the indicium: 1 to 4 of [A-Z0-9]. */
  category: string;
  description: string;
  /** Zoned classes price by zone 1..9 (`prices[zone - 1]`); others have one `price` per step. */
  zoned: boolean;
  /** Heaviest piece accepted; equals the last step's upToOz. */
  maxWeightOz: number;
  /** Ascending weight steps: a piece pays the first step whose upToOz is at least its weight. */
  steps: Array<{ upToOz: number; price?: number; prices?: number[] }>;
}

/** Zones of the zoned classes. */
export const ZONES = 9;

const BYTE = (n: unknown) => Number.isInteger(n) && (n as number) >= 0 && (n as number) <= 255;
const MILLS = (n: unknown) => Number.isSafeInteger(n) && (n as number) > 0 && (n as number) <= 2 ** 32 - 1;

/**
 * Checks a table read from JSON and returns it typed; throws with the first problem. Run on the
 * shipped tables when the module loads, so a broken data file fails at startup, not at a sale.
 */
export function validateRateTable(json: unknown, source = 'rate table'): RateTable {
  const t = json as RateTable;
  const fail = (why: string): never => {
    throw new Error(`${source}: ${why}`);
  };
  if (!t || typeof t !== 'object') fail('not an object');
  if (!BYTE(t.id)) fail('id must be an integer 0..255');
  if (!BYTE(t.version)) fail('version must be an integer 0..255');
  if (typeof t.name !== 'string' || !t.name) fail('name is required');
  if (typeof t.effectiveFrom !== 'string' || Number.isNaN(Date.parse(t.effectiveFrom))) fail('effectiveFrom must be an ISO 8601 date');
  if (!Array.isArray(t.classes) || t.classes.length === 0) fail('classes must be a non-empty array');
  const seen = new Set<string>();
  for (const c of t.classes) {
    const where = `class ${c?.class}`;
    if (typeof c.class !== 'string' || !/^[a-z0-9-]{1,40}$/.test(c.class)) fail(`${where}: class must be 1-40 of [a-z0-9-]`);
    if (seen.has(c.class)) fail(`${where}: listed twice`);
    seen.add(c.class);
    if (typeof c.category !== 'string' || !/^[A-Z0-9]{1,4}$/.test(c.category)) fail(`${where}: category must be 1 to 4 of [A-Z0-9]`);
    if (typeof c.zoned !== 'boolean') fail(`${where}: zoned must be a boolean`);
    if (!Array.isArray(c.steps) || c.steps.length === 0) fail(`${where}: steps must be a non-empty array`);
    let last = 0;
    for (const s of c.steps) {
      if (typeof s.upToOz !== 'number' || !(s.upToOz > last)) fail(`${where}: step weights must increase (at ${s.upToOz} oz)`);
      last = s.upToOz;
      if (c.zoned) {
        if (!Array.isArray(s.prices) || s.prices.length !== ZONES || !s.prices.every(MILLS) || s.price !== undefined) {
          fail(`${where}: step ${s.upToOz} oz needs prices for zones 1..${ZONES}, integer mills`);
        }
      } else if (!MILLS(s.price) || s.prices !== undefined) {
        fail(`${where}: step ${s.upToOz} oz needs one price, integer mills`);
      }
    }
    if (c.maxWeightOz !== last) fail(`${where}: maxWeightOz must equal the last step (${last} oz)`);
  }
  return t;
}

/**
 * Checks a set of tables as a whole: each valid, (id, version) unique, effective dates unique,
 * and within a family versions increase with the effective date. Returns them oldest first.
 */
export function validateRateTables(tables: readonly unknown[]): RateTable[] {
  const list = tables.map((t, i) => validateRateTable(t, `rate table #${i}`));
  list.sort((a, b) => Date.parse(a.effectiveFrom) - Date.parse(b.effectiveFrom));
  const ids = new Set<string>();
  for (let i = 0; i < list.length; i++) {
    const t = list[i];
    if (ids.has(`${t.id}/${t.version}`)) throw new Error(`rate table ${t.name}: id ${t.id} version ${t.version} is used twice`);
    ids.add(`${t.id}/${t.version}`);
    const prev = list[i - 1];
    if (prev && Date.parse(prev.effectiveFrom) === Date.parse(t.effectiveFrom)) throw new Error(`rate tables ${prev.name} and ${t.name} take effect at the same instant`);
    const earlierSameFamily = list.slice(0, i).filter((p) => p.id === t.id);
    if (earlierSameFamily.some((p) => p.version >= t.version)) throw new Error(`rate table ${t.name}: version ${t.version} does not increase with the effective date`);
  }
  return list;
}
