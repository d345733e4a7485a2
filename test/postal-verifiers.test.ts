import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freshDatabase } from './helpers/db';
import { authenticateVerifier } from '../src/indicium/postal-verifiers';
import type { Database } from '../src/db/database';

const run = promisify(execFile);

/** `npm run postal`: the operator's credentials for postal verifiers (docs/indicium.md). */
describe('postal verifier credentials (npm run postal, real PostgreSQL)', function () {
  this.timeout(60_000);
  let db: Database;
  before(async () => { db = await freshDatabase(); });

  const postal = (...args: string[]) => run(process.execPath, [join(__dirname, '..', 'scripts', 'postal.js'), ...args], { env: { ...process.env, DATABASE_URL: db.url } })
    .then((r) => ({ code: 0, out: r.stdout }), (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }));

  it('add-verifier prints the token once (only its hash is stored); it authenticates until revoke-verifier; list-verifiers shows both states', async () => {
    const added = await postal('add-verifier', '--plant', 'NEW YORK NY P&DC');
    expect(added.code, added.out).to.equal(0);
    const id = /verifier (pv-[0-9a-f]{16}) for plant 'NEW YORK NY P&DC'/.exec(added.out)?.[1] as string;
    const token = /^(pvt_[A-Za-z0-9_-]{43})$/m.exec(added.out)?.[1] as string;
    expect(id).to.be.a('string');
    expect(token).to.be.a('string');
    const row = await db.knex('postal_verifiers').where({ verifier_id: id }).first();
    expect(JSON.stringify(row)).to.not.contain(token.slice(4));
    expect(await authenticateVerifier(db.knex, token)).to.deep.equal({ verifierId: id, plant: 'NEW YORK NY P&DC' });
    expect(await authenticateVerifier(db.knex, token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A'))).to.equal(null);
    expect((await postal('list-verifiers')).out).to.match(new RegExp(`${id}  NEW YORK NY P&DC  created \\S+\\n`));
    expect((await postal('revoke-verifier', '--id', id)).code).to.equal(0);
    expect(await authenticateVerifier(db.knex, token)).to.equal(null);
    expect((await postal('list-verifiers')).out).to.contain('REVOKED');
    expect((await postal('revoke-verifier', '--id', id)).code).to.equal(1);
    const bad = await postal('add-verifier', '--plant', 'dock\u0007');
    expect(bad.code).to.equal(1);
    expect(bad.out).to.contain('BAD_REQUEST');
  });
});
