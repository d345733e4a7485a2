import type express from 'express';
import type { Knex } from 'knex';
import { newestAuditRecords } from '../db/repositories/audit-log';
import { indiciumKeyHorizon } from '../db/repositories/meters';
import { readPoolRegisters } from '../db/repositories/pool';
import { ApiRegistry, ERROR_SCHEMA_REF } from './openapi';
import { anyObject } from './schemas';
import { objectSchema } from './validation';

/** One row of GET /v1/operator/audit-records. */
export interface AuditRecordView {
  auditId: number;
  kind: string;
  moduleSerial: string;
  at: string;
  /** Position in the module's chain. */
  seq: number | undefined;
  /** The signed record as stored. */
  record: Record<string, unknown>;
}

/** The answer of GET /v1/operator/pool; amounts in mills. */
export interface PoolView {
  pool: { purchased: number; available: number; refundsPaid: number; updatedAt: string };
  indiciumKeys: { meters: number; soonestExpiry: string | null };
}

/**
 * Read-only views for the operator's web page (docs/web-app.md), behind the operator
 * credential like the other /v1/operator routes: the newest signed audit records, and the
 * vendor's postage pool with the indicium keys' renewal horizon. They read; they change nothing.
 */
export function defineOperatorViews(api: ApiRegistry, deps: { db: Knex; operatorOf: (req: express.Request) => Promise<unknown> }): void {
  const ok = (description: string) => ({ 200: { description, schema: anyObject }, 400: { description: 'invalid request', schema: ERROR_SCHEMA_REF } });
  api.defineRoute<unknown, { limit?: number }>({
    method: 'get', path: '/v1/operator/audit-records', summary: "the newest records of the modules' signed audit chains, newest first (verify them with npm run audit -- verify)",
    query: objectSchema({ limit: { type: 'integer', minimum: 1, maximum: 200 } }, []),
    responses: ok('audit records'),
    handler: async (req): Promise<{ records: AuditRecordView[] }> => {
      await deps.operatorOf(req as unknown as express.Request);
      const rows = await newestAuditRecords(deps.db, Number(req.query.limit ?? 50));
      return {
        records: rows.map((r) => ({
          auditId: Number(r.audit_id), kind: r.kind, moduleSerial: r.module_serial, at: r.at.toISOString(), seq: r.record.seq, record: r.record,
        })),
      };
    },
  });
  api.defineRoute({
    method: 'get', path: '/v1/operator/pool', summary: "the vendor's postage pool registers (mills) and when the first indicium key expires",
    responses: ok('pool registers'),
    handler: async (req): Promise<PoolView> => {
      await deps.operatorOf(req as unknown as express.Request);
      const pool = await readPoolRegisters(deps.db);
      const keys = await indiciumKeyHorizon(deps.db);
      return {
        pool: { purchased: Number(pool.purchased), available: Number(pool.available), refundsPaid: Number(pool.refunds_paid), updatedAt: pool.updated_at.toISOString() },
        indiciumKeys: { meters: Number(keys?.meters ?? 0), soonestExpiry: keys?.soonest ? keys.soonest.toISOString() : null },
      };
    },
  });
}
