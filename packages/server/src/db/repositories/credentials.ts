import type { Knex } from 'knex';

/**
 * The credential tables: postal_verifiers (a plant's verifier) and operators. Both have the same
 * shape under their own id and label columns; callers name the table by its kind.
 */
export type CredentialTable = 'verifier' | 'operator';

const TABLES: Record<CredentialTable, { table: string; id: string; label: string }> = {
  verifier: { table: 'postal_verifiers', id: 'verifier_id', label: 'plant' },
  operator: { table: 'operators', id: 'operator_id', label: 'name' },
};

/** One credential row as read: `name` is the verifier's plant or the operator's name. */
export interface CredentialRow {
  id: string;
  name: string;
  created_at: Date;
  revoked_at: Date | null;
}

export async function insertCredential(db: Knex, kind: CredentialTable, row: { id: string; name: string; tokenSha256: Buffer }): Promise<void> {
  const t = TABLES[kind];
  await db(t.table).insert({ [t.id]: row.id, [t.label]: row.name, token_sha256: row.tokenSha256 });
}

/** Sets revoked_at now on the unrevoked credential `id`; the number of rows revoked (0 or 1). */
export async function revokeCredentialRow(db: Knex, kind: CredentialTable, id: string): Promise<number> {
  const t = TABLES[kind];
  return db(t.table).where({ [t.id]: id }).whereNull('revoked_at').update({ revoked_at: db.fn.now() });
}

/** The credentials of a kind, oldest first. */
export async function listCredentialRows(db: Knex, kind: CredentialTable): Promise<CredentialRow[]> {
  const t = TABLES[kind];
  return db(t.table).orderBy('created_at').select(`${t.id} as id`, `${t.label} as name`, 'created_at', 'revoked_at');
}

/** The unrevoked credential whose token hashes to `tokenSha256`. */
export async function findUnrevokedCredential(db: Knex, kind: CredentialTable, tokenSha256: Buffer): Promise<{ id: string; name: string } | undefined> {
  const t = TABLES[kind];
  return db(t.table).where({ token_sha256: tokenSha256 }).whereNull('revoked_at').first(`${t.id} as id`, `${t.label} as name`);
}
