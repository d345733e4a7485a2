import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { freshDatabase } from '../helpers/db';
import { authenticate } from '@vbi/server/api/credentials';
import type { Database } from '@vbi/server/db/database';

const run = promisify(execFile);

/** `npm run credentials`: postal verifiers' and operators' bearer credentials (docs/api-conventions.md). */
describe('bearer credentials (npm run credentials, real PostgreSQL)', function () {
  this.timeout(60_000);
  let db: Database;
  before(async () => { db = await freshDatabase(); });

  const cli = (...args: string[]) => run(process.execPath, [require.resolve('@vbi/server/bin/credentials'), ...args], { env: { ...process.env, DATABASE_URL: db.url } })
    .then((r) => ({ code: 0, out: r.stdout }), (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }));

  it('add prints the token once (only its hash is stored); it authenticates as its own kind only, until revoke; list shows both states', async () => {
    const added = await cli('add', 'verifier', '--plant', 'NEW YORK NY P&DC');
    expect(added.code, added.out).to.equal(0);
    const id = /verifier (pv-[0-9a-f]{16}) 'NEW YORK NY P&DC'/.exec(added.out)?.[1] as string;
    const token = /^(pvt_[A-Za-z0-9_-]{43})$/m.exec(added.out)?.[1] as string;
    expect(id).to.be.a('string');
    expect(token).to.be.a('string');
    const row = await db.knex('postal_verifiers').where({ verifier_id: id }).first();
    expect(JSON.stringify(row)).to.not.contain(token.slice(4));
    expect(await authenticate(db.knex, 'verifier', token)).to.deep.equal({ id, name: 'NEW YORK NY P&DC' });
    expect(await authenticate(db.knex, 'operator', token)).to.equal(null);
    expect(await authenticate(db.knex, 'verifier', token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A'))).to.equal(null);
    const op = await cli('add', 'operator', '--name', 'Olga Operator');
    const opToken = /^(opt_[A-Za-z0-9_-]{43})$/m.exec(op.out)?.[1] as string;
    expect((await authenticate(db.knex, 'operator', opToken))?.name).to.equal('Olga Operator');
    expect(await authenticate(db.knex, 'verifier', opToken)).to.equal(null);
    expect((await cli('list')).out).to.match(new RegExp(`${id}  verifier  NEW YORK NY P&DC  created \\S+\\n`));
    expect((await cli('revoke', '--id', id)).code).to.equal(0);
    expect(await authenticate(db.knex, 'verifier', token)).to.equal(null);
    expect((await cli('list')).out).to.contain('REVOKED');
    expect((await cli('revoke', '--id', id)).code).to.equal(1);
    const bad = await cli('add', 'verifier', '--plant', 'dock\u0007');
    expect(bad.code).to.equal(1);
    expect(bad.out).to.contain('BAD_REQUEST');
    expect((await cli('add', 'verifier')).code).to.equal(2);
  });
});
