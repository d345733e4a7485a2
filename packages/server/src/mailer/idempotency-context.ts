/**
 * What a handler behind the API's idempotency middleware (packages/server/src/api/idempotency.ts) learns: the
 * key, its scope, and since when (database clock) it exists.
 */
export interface IdempotencyContext {
  scope: string;
  key: string;
  since: Date;
  /** True when an earlier run of this request died or failed: resume from what it committed. */
  resumed: boolean;
}
