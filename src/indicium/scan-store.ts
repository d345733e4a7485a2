import type { Knex } from 'knex';
import { firstScanOf, insertScanIfFirst } from '../db/repositories/scans';

/** One sighting of an indicium in the mail stream. */
export interface Scan {
  /** indiciumDigest(data): SHA-256 of the signed bytes, 32 bytes. */
  indiciumDigest: Buffer;
  meterId: string;
  sequence: number;
  seenAt: Date;
  /** Where it was scanned: a facility, a sorter, a verifier's name. */
  location: string;
  /** The plant of the postal verifier's credential that recorded it (src/api/credentials.ts). */
  plant?: string;
}

export interface Sighting {
  seenAt: Date;
  location: string;
  plant?: string;
}

export interface FirstSighting extends Sighting {
  /** True when the first sighting was another indicium with the same meter and piece number. */
  otherIndicium: boolean;
}

/**
 * Remembers every indicium ever scanned, and every piece number (meter, sequence). `record` is
 * atomic: of any number of concurrent scans of the same indicium, or of indicia with the same
 * piece number, exactly one gets `firstSeen: null`; every other scan gets the first one.
 */
export interface ScanStore {
  record(scan: Scan): Promise<{ firstSeen: FirstSighting | null }>;
}

/** ScanStore on the indicium_scans table (sql/0010_indicium_scans.sql, sql/0120_postal_verification.sql). */
export class PgScanStore implements ScanStore {
  constructor(private readonly knex: Knex) {}

  async record(scan: Scan): Promise<{ firstSeen: FirstSighting | null }> {
    if (scan.indiciumDigest.length !== 32) throw new Error('indicium digest must be 32 bytes');
    // ON CONFLICT DO NOTHING (on the digest or on the piece number) waits for a concurrent
    // inserter to commit, then skips: the unique indexes decide who was first, not a
    // read-then-write race.
    const inserted = await insertScanIfFirst(this.knex, {
      indiciumDigest: scan.indiciumDigest, meterId: scan.meterId, sequence: scan.sequence, seenAt: scan.seenAt, location: scan.location, plant: scan.plant ?? null,
    });
    if (inserted.length === 1) return { firstSeen: null };
    const first = await firstScanOf(this.knex, scan.indiciumDigest, scan.meterId, scan.sequence);
    if (!first) throw new Error('indicium scan row vanished after a conflict');
    return {
      firstSeen: {
        seenAt: first.first_seen_at, location: first.first_location, ...(first.first_plant ? { plant: first.first_plant } : {}),
        otherIndicium: !Buffer.from(first.indicium_digest).equals(scan.indiciumDigest),
      },
    };
  }
}
