/**
 * Shards (docs/operations.md, "Several processes, several tokens"): a deployment's meters are
 * split into shards, and each shard is served by one process at a time, with tokens of its own.
 * A shard is a whole ledger of its own in the one database: its own PostgreSQL schema (tables,
 * meter map, journal, master PSD and pool), its own modules and leases. Nothing a command writes
 * crosses shards, so each shard keeps every invariant of the single-process service, and a shard
 * can be moved to another database without touching the others.
 *
 * A meter belongs to the shard that created it, and its id says which: `VBI-…` is shard 0 (every
 * meter of a deployment from before shards), `VBI<n>-…` shard n.
 */

/** Highest shard number. */
export const MAX_SHARD = 999;

/** The PostgreSQL schema of shard `n`: shard 0 keeps the default (`public`), shard n is `shard_<n>`. */
export function shardSchema(n: number): string | undefined {
  return n === 0 ? undefined : `shard_${n}`;
}

/** What the ids of the meters shard `n` creates start with (MeterGen, packages/server/src/ledger/meter-pool.ts). */
export function meterIdPrefix(n: number): string {
  return n === 0 ? 'VBI' : `VBI${n}`;
}

/** The shard a meter id belongs to: `VBI<n>-…` is n, any other id shard 0. */
export function shardOfMeter(meterId: string): number {
  const m = /^VBI([1-9][0-9]{0,2})-/.exec(meterId);
  return m ? Number(m[1]) : 0;
}
