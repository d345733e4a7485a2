/** One sighting of an indicium in the mail stream. */
export interface Scan {
  /** indiciumDigest(data): SHA-256 of the signed bytes, 32 bytes. */
  indiciumDigest: Buffer;
  meterId: string;
  sequence: number;
  seenAt: Date;
  /** Where it was scanned: a facility, a sorter, a verifier's name. */
  location: string;
  /** The plant of the postal verifier's credential that recorded it (packages/server/src/api/credentials.ts). */
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
