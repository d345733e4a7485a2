import { vbiError } from '../errors';
import { MailClassRates, RateTable, ZONES } from './rate-table';
import { SHIPPED_RATE_TABLES } from './shipped-tables';

/** What to price: one piece of mail. */
export interface PostageRequest {
  /** A class of the effective table, e.g. 'first-class-letter', 'priority-mail'. */
  mailClass: string;
  /** Weight in ounces, > 0 (fractions allowed: the piece pays the step at or above it). */
  weightOz: number;
  /** 1..9, required for zoned classes (priority-mail, ground-advantage), ignored otherwise. */
  zone?: number;
  /** Mailing date; selects the table in effect then. Default: now. */
  at?: Date;
}

/** The price and the table that produced it (both go into the indicium). */
export interface PostageQuote {
  /** Mills. */
  postage: number;
  rateTableId: number;
  rateTableVersion: number;
  /** e.g. '2026-01'. */
  rateTableName: string;
  class: string;
  /** Indicium rate category, e.g. 'FCL'. */
  rateCategory: string;
  /** The weight step charged, ounces. */
  weightStepOz: number;
}

/** JSON Schema of a PostageRequest on the wire (`at` as an ISO 8601 date or date-time string). */
export const postageRequestSchema = {
  type: 'object',
  required: ['mailClass', 'weightOz'],
  additionalProperties: false,
  properties: {
    mailClass: { type: 'string', pattern: '^[a-z0-9-]{1,40}$' },
    weightOz: { type: 'number', exclusiveMinimum: 0, maximum: 100000 },
    zone: { type: 'integer', minimum: 1, maximum: ZONES },
    at: { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}(T[0-9:.]+(Z|[+-]\\d{2}:\\d{2}))?$' },
  },
} as const;

/** The table in effect at `at`: the latest whose effectiveFrom is not after it. RATE_NOT_FOUND before the first. */
export function rateTableAt(at: Date = new Date(), tables: readonly RateTable[] = SHIPPED_RATE_TABLES): RateTable {
  if (Number.isNaN(at.getTime())) throw vbiError('BAD_REQUEST', 'at is not a valid date', { field: 'at' });
  let found: RateTable | undefined;
  for (const t of tables) {
    if (Date.parse(t.effectiveFrom) <= at.getTime() && (!found || Date.parse(t.effectiveFrom) > Date.parse(found.effectiveFrom))) found = t;
  }
  if (!found) throw vbiError('RATE_NOT_FOUND', `no rate table is in effect at ${at.toISOString()}`, { field: 'at' });
  return found;
}

/**
 * Computes the postage of one piece from the table in effect at `req.at`. Malformed input
 * (weight not a positive number, zone not 1..9) is BAD_REQUEST; a class the table does not
 * have, a piece over the class's maximum weight, or a zoned class without a zone is
 * RATE_NOT_FOUND (`details.field` names the input).
 */
export function computePostage(req: PostageRequest, tables: readonly RateTable[] = SHIPPED_RATE_TABLES): PostageQuote {
  if (typeof req.weightOz !== 'number' || !Number.isFinite(req.weightOz) || req.weightOz <= 0) {
    throw vbiError('BAD_REQUEST', 'weightOz must be a positive number of ounces', { field: 'weightOz' });
  }
  if (req.zone !== undefined && (!Number.isInteger(req.zone) || req.zone < 1 || req.zone > ZONES)) {
    throw vbiError('BAD_REQUEST', `zone must be an integer 1..${ZONES}`, { field: 'zone' });
  }
  const table = rateTableAt(req.at ?? new Date(), tables);
  const rates: MailClassRates | undefined = table.classes.find((c) => c.class === req.mailClass);
  if (!rates) {
    throw vbiError('RATE_NOT_FOUND', `rate table ${table.name} has no mail class '${req.mailClass}'`, { field: 'mailClass', classes: table.classes.map((c) => c.class) });
  }
  const step = rates.steps.find((s) => req.weightOz <= s.upToOz);
  if (!step) {
    throw vbiError('RATE_NOT_FOUND', `${rates.class} pieces may weigh at most ${rates.maxWeightOz} oz`, { field: 'weightOz', maxWeightOz: rates.maxWeightOz });
  }
  let postage: number;
  if (rates.zoned) {
    if (req.zone === undefined) throw vbiError('RATE_NOT_FOUND', `${rates.class} is priced by zone: zone 1..${ZONES} is required`, { field: 'zone' });
    postage = (step.prices as number[])[req.zone - 1];
  } else {
    postage = step.price as number;
  }
  return {
    postage,
    rateTableId: table.id,
    rateTableVersion: table.version,
    rateTableName: table.name,
    class: rates.class,
    rateCategory: rates.category,
    weightStepOz: step.upToOz,
  };
}
