import type { Knex } from 'knex';
import { firstScanOf, insertScanIfFirst } from '../db/repositories/scans';
import { FirstSighting, Scan, ScanStore } from '@vbi/core/indicium/scan-store';

/** ScanStore on the indicium_scans table (packages/server/sql/0010_indicium_scans.sql, packages/server/sql/0120_postal_verification.sql). */
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
