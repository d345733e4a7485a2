import type { Knex } from 'knex';

/** The indicium_scans table: the first sighting of every indicium and every piece number. */
export interface ScanRow {
  indicium_digest: Buffer;
  first_seen_at: Date;
  first_location: string;
  first_plant: string | null;
}

/**
 * Inserts the first sighting unless the digest or the piece number is there already (ON CONFLICT
 * DO NOTHING); the digests inserted (none on a conflict).
 */
export async function insertScanIfFirst(db: Knex, row: { indiciumDigest: Buffer; meterId: string; sequence: number; seenAt: Date; location: string; plant: string | null }): Promise<Array<{ indicium_digest: Buffer }>> {
  return db('indicium_scans')
    .insert({
      indicium_digest: row.indiciumDigest,
      meter_id: row.meterId,
      sequence: row.sequence,
      first_seen_at: row.seenAt,
      first_location: row.location,
      first_plant: row.plant,
    })
    .onConflict()
    .ignore()
    .returning('indicium_digest');
}

/** The row of the digest, else the row of the piece number (meter, sequence). */
export async function firstScanOf(db: Knex, indiciumDigest: Buffer, meterId: string, sequence: number): Promise<ScanRow | undefined> {
  return db('indicium_scans')
    .where({ indicium_digest: indiciumDigest })
    .orWhere({ meter_id: meterId, sequence })
    .orderByRaw('indicium_digest = ? DESC', [indiciumDigest])
    .first('indicium_digest', 'first_seen_at', 'first_location', 'first_plant');
}
