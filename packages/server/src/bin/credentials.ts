/**
 * npm run credentials -- add verifier --plant NAME | add operator --name NAME | revoke --id ID | list
 * Bearer credentials (docs/api-conventions.md "Credentials"): a postal verifier's (one per plant;
 * only its requests to POST /v1/verify record sightings) and an operator's (the /v1/operator
 * routes). The token is printed once, at creation. Runs beside the service.
 */
import { parseArgs } from 'node:util';
import { databaseToolConfig } from '../config/tool-settings';
import { openShardDatabase } from '../config/shard-database';
import { addCredential, listCredentials, revokeCredential } from '../api/credentials';
import { runMain } from '@vbi/core/cli/run-main';

const USAGE = 'usage: npm run credentials -- add verifier --plant NAME | add operator --name NAME | revoke --id ID | list';

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({ allowPositionals: true, options: { plant: { type: 'string' }, name: { type: 'string' }, id: { type: 'string' } } });
  const [command, kind] = positionals;
  const valid = (command === 'add' && ((kind === 'verifier' && values.plant) || (kind === 'operator' && values.name)))
    || (command === 'revoke' && values.id) || command === 'list';
  if (!valid) {
    process.stderr.write(USAGE + '\n');
    return 2;
  }
  const config = databaseToolConfig(process.env);
  const db = await openShardDatabase(config, 2);
  try {
    if (command === 'add') {
      const c = await addCredential(db.knex, kind as 'verifier' | 'operator', (values.plant ?? values.name) as string);
      process.stdout.write(`${kind} ${c.id} '${c.name}'\ntoken (shown once; send it as Authorization: Bearer <token>):\n${c.token}\n`);
      return 0;
    }
    if (command === 'revoke') {
      const done = await revokeCredential(db.knex, values.id as string);
      process.stdout.write(done ? `${values.id} revoked\n` : `no unrevoked credential ${values.id}\n`);
      return done ? 0 : 1;
    }
    for (const c of await listCredentials(db.knex)) {
      process.stdout.write(`${c.id}  ${c.kind}  ${c.name}  created ${c.createdAt.toISOString()}${c.revokedAt ? `  REVOKED ${c.revokedAt.toISOString()}` : ''}\n`);
    }
    return 0;
  } finally {
    await db.close();
  }
}

runMain(main);
