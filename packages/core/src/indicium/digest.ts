import { createHash } from 'node:crypto';

/**
 * The identity of an indicium for duplicate detection: SHA-256 of the signed data, NOT of the
 * signature. ECDSA signatures are malleable ((r, s) and (r, n - s) both verify) and randomised,
 * so hashing data || signature would let a copier mint a "new" valid indicium from a printed
 * one. The data already holds the meter ID and its sequence number, so no two genuine
 * indicia share it. Persisted in indicium_scans: changing this function forgets every scan.
 */
export function indiciumDigest(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}
