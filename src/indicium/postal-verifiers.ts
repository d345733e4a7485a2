import { createHash, randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { vbiError } from '../errors';

/**
 * Postal verifier credentials (docs/indicium.md "Sightings and fraud cases"): one per plant (or
 * per verifier), a bearer token shown once at creation and stored only as its SHA-256. Only a
 * request carrying a valid, unrevoked credential records a sighting in the mail stream; anyone
 * else's verification answers and records nothing, so a photo of a label cannot make its meter a
 * duplicate.
 */
export interface PostalVerifier {
  verifierId: string;
  plant: string;
  createdAt: Date;
  revokedAt: Date | null;
}

const TOKEN_PREFIX = 'pvt_';
const TOKEN_PATTERN = /^pvt_[A-Za-z0-9_-]{43}$/;

function tokenHash(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** Plants: letters, digits, space and . , & ' / - (1–64), as postal facility names are written. */
export function checkPlant(plant: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9 .,&'/-]{0,63}$/.test(plant)) throw vbiError('BAD_REQUEST', `plant '${plant}' must be 1-64 letters, digits, spaces or . , & ' / -`);
  return plant;
}

/** Creates a credential; the token is returned here and never again. */
export async function addVerifier(db: Knex, plant: string): Promise<{ verifierId: string; plant: string; token: string }> {
  const verifierId = `pv-${randomBytes(8).toString('hex')}`;
  const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
  await db('postal_verifiers').insert({ verifier_id: verifierId, plant: checkPlant(plant), token_sha256: tokenHash(token) });
  return { verifierId, plant, token };
}

/** Revokes a credential at once; false when there is no such (unrevoked) credential. */
export async function revokeVerifier(db: Knex, verifierId: string): Promise<boolean> {
  return (await db('postal_verifiers').where({ verifier_id: verifierId }).whereNull('revoked_at').update({ revoked_at: db.fn.now() })) === 1;
}

export async function listVerifiers(db: Knex): Promise<PostalVerifier[]> {
  const rows = await db('postal_verifiers').orderBy('created_at').select('verifier_id', 'plant', 'created_at', 'revoked_at');
  return rows.map((r) => ({ verifierId: r.verifier_id, plant: r.plant, createdAt: r.created_at, revokedAt: r.revoked_at }));
}

/** The unrevoked credential a bearer token belongs to; null for anything else. */
export async function authenticateVerifier(db: Knex, token: string): Promise<{ verifierId: string; plant: string } | null> {
  if (!TOKEN_PATTERN.test(token)) return null;
  const row = await db('postal_verifiers').where({ token_sha256: tokenHash(token) }).whereNull('revoked_at').first('verifier_id', 'plant');
  return row ? { verifierId: row.verifier_id, plant: row.plant } : null;
}
