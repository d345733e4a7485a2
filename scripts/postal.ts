/**
 * npm run postal -- add-verifier --plant NAME | revoke-verifier --id ID | list-verifiers
 * Postal verifier credentials (docs/indicium.md "Sightings and fraud cases"): only requests
 * carrying one (Authorization: Bearer <token>) record sightings in the mail stream. The token is
 * printed once, at creation. Runs beside the service.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config/config';
import { openDatabase } from '../src/db/database';
import { addVerifier, listVerifiers, revokeVerifier } from '../src/indicium/postal-verifiers';
import { isVbiError } from '../src/errors';

const USAGE = 'usage: npm run postal -- add-verifier --plant NAME | revoke-verifier --id ID | list-verifiers';

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({ allowPositionals: true, options: { plant: { type: 'string' }, id: { type: 'string' } } });
  const command = positionals[0];
  if (!['add-verifier', 'revoke-verifier', 'list-verifiers'].includes(command ?? '')) {
    process.stderr.write(USAGE + '\n');
    return 2;
  }
  const config = loadConfig({ ...process.env, PKCS11_USER_PIN: process.env.PKCS11_USER_PIN ?? 'unused-by-postal' });
  const db = await openDatabase({ url: config.databaseUrl, varDir: config.varDir, archive: config.walArchive, poolSize: 2 });
  try {
    if (command === 'add-verifier') {
      if (!values.plant) throw new Error(`--plant is required\n${USAGE}`);
      const v = await addVerifier(db.knex, values.plant);
      process.stdout.write(`verifier ${v.verifierId} for plant '${v.plant}'\ntoken (shown once; send it as Authorization: Bearer <token>):\n${v.token}\n`);
      return 0;
    }
    if (command === 'revoke-verifier') {
      if (!values.id) throw new Error(`--id is required\n${USAGE}`);
      const done = await revokeVerifier(db.knex, values.id);
      process.stdout.write(done ? `verifier ${values.id} revoked\n` : `no unrevoked verifier ${values.id}\n`);
      return done ? 0 : 1;
    }
    for (const v of await listVerifiers(db.knex)) {
      process.stdout.write(`${v.verifierId}  ${v.plant}  created ${v.createdAt.toISOString()}${v.revokedAt ? `  REVOKED ${v.revokedAt.toISOString()}` : ''}\n`);
    }
    return 0;
  } finally {
    await db.close();
  }
}

main().then((c) => process.exit(c), (e) => {
  process.stderr.write(isVbiError(e) ? `${e.code}: ${e.message}\n` : `${(e as Error).message}\n`);
  process.exit(1);
});
