import { createHash, randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { vbiError } from '@vbi/core/errors';
import { findUnrevokedCredential, insertCredential, listCredentialRows, revokeCredentialRow } from '../db/repositories/credentials';

/**
 * Bearer credentials of the people and systems beside the mailers (docs/api-conventions.md
 * "Credentials"): a postal verifier (one per plant; its requests to POST /v1/verify record
 * sightings) and an operator (the /v1/operator routes). A token is shown once, at creation, and
 * stored only as its SHA-256; revocation takes effect at the next request.
 */
export type CredentialKind = 'verifier' | 'operator';

interface KindSpec { idPrefix: string; tokenPrefix: string }

const KINDS: Record<CredentialKind, KindSpec> = {
  verifier: { idPrefix: 'pv-', tokenPrefix: 'pvt_' },
  operator: { idPrefix: 'op-', tokenPrefix: 'opt_' },
};

/** Who a credential names: the plant of a verifier, the name of an operator. */
export interface Credential {
  kind: CredentialKind;
  id: string;
  /** The verifier's plant, or the operator's name. */
  name: string;
  createdAt: Date;
  revokedAt: Date | null;
}

function tokenHash(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** Plants and operator names: letters, digits, space and . , & ' / - (1–64). */
export function checkCredentialName(name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9 .,&'/-]{0,63}$/.test(name)) throw vbiError('BAD_REQUEST', `'${name}' must be 1-64 letters, digits, spaces or . , & ' / -`);
  return name;
}

/** Creates a credential; the token is returned here and never again. */
export async function addCredential(db: Knex, kind: CredentialKind, name: string): Promise<{ id: string; name: string; token: string }> {
  const k = KINDS[kind];
  const id = `${k.idPrefix}${randomBytes(8).toString('hex')}`;
  const token = k.tokenPrefix + randomBytes(32).toString('base64url');
  await insertCredential(db, kind, { id, name: checkCredentialName(name), tokenSha256: tokenHash(token) });
  return { id, name, token };
}

/** Revokes a credential (of either kind, by its id) at once; false when there is no such unrevoked one. */
export async function revokeCredential(db: Knex, id: string): Promise<boolean> {
  for (const [kind, k] of Object.entries(KINDS) as Array<[CredentialKind, KindSpec]>) {
    if (!id.startsWith(k.idPrefix)) continue;
    return (await revokeCredentialRow(db, kind, id)) === 1;
  }
  return false;
}

export async function listCredentials(db: Knex): Promise<Credential[]> {
  const out: Credential[] = [];
  for (const kind of Object.keys(KINDS) as CredentialKind[]) {
    for (const r of await listCredentialRows(db, kind)) {
      out.push({ kind, id: r.id, name: r.name, createdAt: r.created_at, revokedAt: r.revoked_at });
    }
  }
  return out;
}

/** The unrevoked credential of `kind` a bearer token belongs to; null for anything else. */
export async function authenticate(db: Knex, kind: CredentialKind, token: string): Promise<{ id: string; name: string } | null> {
  const k = KINDS[kind];
  if (!token.startsWith(k.tokenPrefix) || !/^[A-Za-z0-9_-]{43}$/.test(token.slice(k.tokenPrefix.length))) return null;
  const row = await findUnrevokedCredential(db, kind, tokenHash(token));
  return row ? { id: row.id, name: row.name } : null;
}

/**
 * The credential of an `Authorization: Bearer` header: undefined without the header; a header
 * that names no unrevoked credential of `kind` is VERIFIER_UNKNOWN / OPERATOR_UNKNOWN (401).
 */
export async function bearer(db: Knex, kind: CredentialKind, header: string | undefined): Promise<{ id: string; name: string } | undefined> {
  if (header === undefined) return undefined;
  const m = /^Bearer +(\S+)$/i.exec(header); // the scheme name is case-insensitive (RFC 9110)
  const found = m ? await authenticate(db, kind, m[1]) : null;
  if (!found) throw vbiError(kind === 'verifier' ? 'VERIFIER_UNKNOWN' : 'OPERATOR_UNKNOWN', `the Authorization header does not carry an unrevoked ${kind} credential`);
  return found;
}
