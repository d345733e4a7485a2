import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createService } from '@vbi/server/service';
import { AuditRecord, canonicalJson, verifyAuditSignature } from '@vbi/server/module/audit';
import { GENESIS_HASH, auditHash, readAuditHead } from '@vbi/server/module/audit-chain';
import { auditRecords, pgAuditStore } from '@vbi/server/ledger/audit-store';
import { verifyAuditLog, type AuditFindingKind } from '@vbi/server/ledger/audit-verify';
import { LedgerFixture, ledgerFixture, testConfig } from '../helpers/ledger';
import { TEST_USER_PIN } from '../helpers/hsm';

const run = promisify(execFile);

/**
 * The signed audit log (docs/audit.md) attacked as an insider with psql would: the newest record
 * deleted, one edited, two swapped, the log put back to an older copy, a forged one appended;
 * and a crash between storing a record and moving the token's head. Real SoftHSM2 token (the
 * head and the identity key), real PostgreSQL (audit_log), the service's own start path.
 */
describe('signed audit log: one hash chain per module, its head in the token', function () {
  this.timeout(120_000);
  let f: LedgerFixture;
  let serial: string;

  beforeEach(async () => {
    f = await ledgerFixture({ stock: false }); // only the starts in the chain: the cases count records
    serial = f.service.engines[0].hsm.serial;
  });
  afterEach(async () => {
    await f.service.close();
  });

  async function restart(over: Parameters<typeof testConfig>[1] = {}): Promise<void> {
    await f.service.close();
    f.service = await createService({ config: testConfig(f.labels, over), db: f.db });
  }

  async function verify(): Promise<{ ok: boolean; kinds: AuditFindingKind[] }> {
    const keys = [];
    for (const e of f.service.engines) keys.push({ serial: e.hsm.serial, identitySpki: e.hsm.identityPublicKey(), head: await readAuditHead(e.hsm) });
    const report = await verifyAuditLog(f.db.knex, keys);
    return { ok: report.ok, kinds: report.findings.map((x) => x.kind) };
  }

  const chain = async (): Promise<AuditRecord[]> => (await auditRecords(f.db.knex, { moduleSerial: serial })).sort((a, b) => a.seq - b.seq);
  const bySeq = (seq: number) => f.db.knex('audit_log').where({ module_serial: serial, seq });

  it('every start is recorded; records are numbered, linked and signed; the token holds the head; a clean log verifies', async () => {
    await restart();
    await restart();
    const records = await chain();
    expect(records.map((r) => [r.seq, r.kind])).to.deep.equal([[1, 'service-started'], [2, 'service-started'], [3, 'service-started']]);
    expect(records[0].prevHash).to.equal(GENESIS_HASH);
    expect(records[1].prevHash).to.equal(auditHash(records[0]));
    expect(records[2].prevHash).to.equal(auditHash(records[1]));
    for (const r of records) expect(verifyAuditSignature(r, f.service.engines[0].hsm.identityPublicKey())).to.equal(true);
    expect(records[0].reason).to.equal('first start recorded in this chain');
    expect(records[2].reason).to.equal('same configuration and database as the previous start');
    expect((records[2].details as { database: { timeline: number } }).database.timeline).to.be.a('number');
    expect(await readAuditHead(f.service.engines[0].hsm)).to.deep.equal({ seq: 3, hash: auditHash(records[2]) });
    expect(await verify()).to.deep.equal({ ok: true, kinds: [] });
  });

  it('a configuration change is on the signed record of the next start', async () => {
    await restart({ spoilageLimitBps: 250 });
    const last = (await chain()).at(-1)!;
    expect(last.reason).to.equal('changed since the previous start: settings.spoilageLimitBps');
    expect((last.details as { settings: { spoilageLimitBps: number } }).settings.spoilageLimitBps).to.equal(250);
  });

  it('the newest record deleted: verify sees the log behind the head; the next start records the break, and the gap stays visible', async () => {
    await restart();
    await bySeq(2).delete();
    expect((await verify()).kinds).to.deep.equal(['behind-head']);
    await restart();
    const records = await chain();
    expect(records.map((r) => [r.seq, r.kind])).to.deep.equal([[1, 'service-started'], [3, 'audit-chain-broken'], [4, 'service-started']]);
    expect(records[1].reason).to.match(/ends at record 1 but the token's head is record 2/);
    expect(records[1].prevHash).to.not.equal(auditHash(records[0])); // it continues from the token's head, not from what is left
    const v = await verify();
    expect(v.ok).to.equal(false);
    expect(v.kinds).to.include.members(['gap', 'break-recorded']);
  });

  it('a record edited: its signature fails and the next record no longer names it', async () => {
    await restart();
    await bySeq(1).update({ record: f.db.knex.raw(`jsonb_set(record, '{reason}', '"nothing happened"')`) });
    expect((await verify()).kinds).to.deep.equal(['bad-signature', 'broken-link']);
  });

  it("a record's columns edited (the signed record left alone) are caught too", async () => {
    await bySeq(1).update({ kind: 'module-reinstated' });
    expect((await verify()).kinds).to.deep.equal(['column-mismatch']);
  });

  it('two records swapped in storage order: reordered', async () => {
    await restart();
    await restart();
    const [r1, r2] = (await f.db.knex('audit_log').where({ module_serial: serial }).orderBy('seq').limit(2).select('audit_id', 'record', 'seq', 'at', 'kind'));
    await f.db.knex.transaction(async (trx) => {
      await trx('audit_log').whereIn('audit_id', [r1.audit_id, r2.audit_id]).delete();
      // re-inserted in the other order: the older record now stored after the newer one
      for (const r of [r2, r1]) await trx('audit_log').insert({ kind: r.kind, module_serial: serial, at: r.at, seq: r.seq, record: JSON.stringify(r.record) });
    });
    expect((await verify()).kinds).to.include('reordered');
  });

  it('the whole log put back to an older copy (several records at once): behind the head; the next start records it', async () => {
    const old = await f.db.knex('audit_log').select('kind', 'module_serial', 'at', 'seq', 'record');
    await restart();
    await restart();
    await f.db.knex.transaction(async (trx) => {
      await trx('audit_log').delete();
      for (const r of old) await trx('audit_log').insert({ ...r, record: JSON.stringify(r.record) });
    });
    expect((await verify()).kinds).to.deep.equal(['behind-head']);
    await restart();
    const broken = (await chain()).find((r) => r.kind === 'audit-chain-broken');
    expect(broken?.reason).to.match(/ends at record 1 but the token's head is record 3/);
    expect(broken?.seq).to.equal(4);
  });

  it('a forged record appended beyond the head: bad signature, beyond the head; the next start records it', async () => {
    const [first] = await chain();
    const forged: AuditRecord = { ...first, seq: 2, prevHash: auditHash(first), kind: 'module-reinstated', reason: 'reinstated by officer Nobody' };
    await pgAuditStore(f.db.knex).insert(forged);
    expect((await verify()).kinds).to.deep.equal(['bad-signature', 'beyond-head']);
    await restart();
    const records = await chain();
    expect(records.map((r) => r.kind)).to.deep.equal(['service-started', 'module-reinstated', 'audit-chain-broken', 'service-started']);
    expect(records[2].reason).to.match(/beyond the token's head 1/);
  });

  it("a crash after a record was stored and before the token's head moved: verify accepts it, the next start moves the head", async () => {
    const hsm = f.service.engines[0].hsm;
    const [first] = await chain();
    // exactly what the chain stores before it moves the head
    const unsigned = { kind: 'service-started' as const, at: new Date().toISOString(), reason: 'stored before a crash', details: {}, moduleSerial: serial, seq: 2, prevHash: auditHash(first) };
    const record: AuditRecord = { ...unsigned, signature: (await hsm.identitySign(Buffer.from(canonicalJson(unsigned), 'utf8'))).toString('base64') };
    await pgAuditStore(f.db.knex).insert(record);
    expect(await verify()).to.deep.equal({ ok: true, kinds: [] });
    await restart();
    expect((await chain()).map((r) => [r.seq, r.kind])).to.deep.equal([[1, 'service-started'], [2, 'service-started'], [3, 'service-started']]);
    expect((await readAuditHead(f.service.engines[0].hsm))?.seq).to.equal(3);
    expect(await verify()).to.deep.equal({ ok: true, kinds: [] });
  });

  it('npm run audit -- verify: exit 0 on a clean log, 1 with the findings listed after an insider deleted the newest record', async () => {
    await restart();
    await f.service.close(); // the script opens the token itself (one process per token, as an operator would run it)
    const env = { ...process.env, DATABASE_URL: f.db.url, PKCS11_TOKEN_LABELS: f.labels.join(','), PKCS11_USER_PIN: TEST_USER_PIN };
    const script = require.resolve('@vbi/server/bin/audit');
    const call = (...args: string[]) => run(process.execPath, [script, ...args], { env }).then(
      (r) => ({ code: 0, out: r.stdout }), (e: { code: number; stdout: string }) => ({ code: e.code, out: e.stdout }));
    const clean = await call('verify');
    expect(clean.code, clean.out).to.equal(0);
    expect(clean.out).to.contain(`module ${serial}: 2 record(s), last 2, token head 2`);
    expect(clean.out).to.contain('audit log OK');
    await bySeq(2).delete();
    const broken = await call('verify');
    expect(broken.code).to.equal(1);
    expect(broken.out).to.match(/behind-head module [0-9a-f]+#1: the log ends at record 1, the token's head is record 2/);
    f.service = await createService({ config: testConfig(f.labels), db: f.db });
  });
});
