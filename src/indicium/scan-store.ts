import type { Knex } from 'knex';

/** One sighting of an indicium in the mail stream. */
export interface Scan {
  /** indiciumDigest(data): SHA-256 of the signed bytes, 32 bytes. */
  indiciumDigest: Buffer;
  meterId: string;
  sequence: number;
  seenAt: Date;
  /** Where it was scanned: a facility, a sorter, a verifier's name. */
  location: string;
}

export interface Sighting {
  seenAt: Date;
  location: string;
}

/**
 * Remembers every indicium ever scanned. `record` is atomic: of any number of concurrent
 * scans of the same indicium exactly one gets `firstSeen: null`; every other scan gets the
 * time and place of that first one.
 */
export interface ScanStore {
  record(scan: Scan): Promise<{ firstSeen: Sighting | null }>;
}

/** ScanStore on the indicium_scans table (sql/0010_indicium_scans.sql). */
export class PgScanStore implements ScanStore {
  constructor(private readonly knex: Knex) {}

  async record(scan: Scan): Promise<{ firstSeen: Sighting | null }> {
    if (scan.indiciumDigest.length !== 32) throw new Error('indicium digest must be 32 bytes');
    // ON CONFLICT DO NOTHING waits for a concurrent inserter of the same digest to commit,
    // then skips: the unique index decides who was first, not a read-then-write race.
    const inserted = await this.knex('indicium_scans')
      .insert({
        indicium_digest: scan.indiciumDigest,
        meter_id: scan.meterId,
        sequence: scan.sequence,
        first_seen_at: scan.seenAt,
        first_location: scan.location,
      })
      .onConflict('indicium_digest')
      .ignore()
      .returning('indicium_digest');
    if (inserted.length === 1) return { firstSeen: null };
    const first = await this.knex('indicium_scans')
      .where({ indicium_digest: scan.indiciumDigest })
      .first('first_seen_at', 'first_location');
    if (!first) throw new Error('indicium scan row vanished after a conflict');
    return { firstSeen: { seenAt: first.first_seen_at, location: first.first_location } };
  }
}
