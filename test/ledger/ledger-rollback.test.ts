import { expect } from 'chai';
import { createIndicium } from '../helpers/ledger-commands';
import { createVerify } from 'node:crypto';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Knex } from 'knex';
import { auditRecords } from '@vbi/server/ledger/audit-store';
import { AuditRecord, canonicalJson } from '@vbi/server/module/audit';
import { spkiToKeyObject } from '@vbi/server/hsm/public-keys';
import { createService, Service } from '@vbi/server/service';
import { conservation } from '@vbi/server/ledger/conservation';
import { verifyJournal } from '@vbi/server/ledger/journal-verify';
import { codeOf } from '../helpers/codes';
import { LedgerFixture, MAIL, asInsider, ledgerFixture, provisionModules, restore, snapshot, testConfig, moduleEvents } from '../helpers/ledger';
import { freshDatabase } from '../helpers/db';
import { TEST_SO_PIN, TEST_USER_PIN, requireClone } from '../helpers/hsm';
import { approvalsFor, installTestOfficers, testOfficers } from '../helpers/officers';
import { toPem } from '@vbi/core/pki/pem';
import { readFileSync, writeFileSync } from 'node:fs';

const run = promisify(execFile);

/**
 * The insider's attacks on the ledger, done with SQL from outside the service, each after the
 * honest path worked: whole-database rollbacks by one or more committed transactions, one meter's
 * rows put back (deleted or re-inserted journal and indicia rows), rows swapped or brought from
 * another database of the deployment, the meter map edited, two processes on one token. For
 * each: nothing more is signed, the module is inhibited or the meter refused, and a record
 * signed by the module identity key says why.
 */


function signedBy(service: Service, rec: AuditRecord): boolean {
  const engine = service.engines.find((e) => e.hsm.serial === rec.moduleSerial);
  if (!engine) return false;
  const { signature, ...rest } = rec;
  return createVerify('sha256').update(canonicalJson(rest)).verify(
    { key: spkiToKeyObject(engine.hsm.identityPublicKey()), dsaEncoding: 'ieee-p1363' }, Buffer.from(signature, 'base64'));
}

/** A service with two funded meters, the honest path exercised (`prints` on meter a). */
async function twoMeters(prints: string[] = ['a']): Promise<{ f: LedgerFixture; a: string; b: string }> {
  const f = await ledgerFixture();
  const a = (await f.newMeter(5_000_000)).meterId;
  const b = (await f.newMeter(5_000_000)).meterId;
  for (const m of [a, b]) await f.service.ledger.postageValueDownload({ meterId: m, amount: 100_000 });
  for (const which of prints) await createIndicium(f.service.ledger, { meterId: which === 'a' ? a : b, postage: 500, mailpiece: MAIL });
  return { f, a, b };
}

const indicia = async (k: Knex) => Number((await k('indicia').count({ n: '*' }).first())?.n);

describe('rollback and tampering attacks on the ledger (SoftHSM2 + PostgreSQL, SQL from outside)', function () {
  this.timeout(180_000);

  describe('one module', () => {
    let f: LedgerFixture;
    let a: string;
    let b: string;
    beforeEach(async () => {
      // the honest path works before every attack
      ({ f, a, b } = await twoMeters());
    });
    afterEach(() => f.service.close());

    const expectInhibited = async (why: string) => {
      const st = f.service.engines[0].status();
      expect(st.state).to.equal('Inhibited');
      expect(st.reason).to.contain(why);
      const audit = (await auditRecords(f.db.knex)).filter((r) => r.kind === 'module-inhibited');
      expect(audit).to.have.length(1);
      expect(audit[0].reason).to.contain(why);
      expect(signedBy(f.service, audit[0])).to.equal(true);
    };

    for (const back of [1, 5]) {
      it(`a snapshot restored exactly ${back} committed print(s) back: inhibited, nothing signed, and still after a restart`, async () => {
        await snapshot(f.db, `p${back}`);
        for (let i = 0; i < back; i++) await createIndicium(f.service.ledger, { meterId: a, postage: 1_000, mailpiece: MAIL });
        await restore(f.db, `p${back}`);
        const before = await indicia(f.db.knex);
        expect(await codeOf(createIndicium(f.service.ledger, { meterId: a, postage: 1_000, mailpiece: MAIL }))).to.equal('NO_MODULE');
        expect(await codeOf(createIndicium(f.service.ledger, { meterId: b, postage: 1_000, mailpiece: MAIL }))).to.equal('NO_MODULE');
        await expectInhibited('rolled back');
        // the signed record names what the rollback lost
        const inhibited = (await auditRecords(f.db.knex)).find((r) => r.kind === 'module-inhibited') as AuditRecord;
        const lost = inhibited.details.ringRecordsMissingFromDatabase as Array<Record<string, unknown>>;
        expect(lost.map((l) => [l.meterId, l.type, l.amount])).to.deep.include([a, 'indicium', 1_000]);
        expect(await indicia(f.db.knex)).to.equal(before);
        await f.service.close();
        f.service = await createService({ config: testConfig(f.labels), db: f.db });
        expect(f.service.engines[0].status().state).to.equal('Inhibited');
        expect(await codeOf(createIndicium(f.service.ledger, { meterId: a, postage: 1_000, mailpiece: MAIL }))).to.equal('NO_MODULE');
        expect(await indicia(f.db.knex)).to.equal(before);
      });
    }

    /** One committed print lost to a restored snapshot: from then on the module refuses. */
    const rollBackOnePrint = async (name: string) => {
      await snapshot(f.db, name);
      await createIndicium(f.service.ledger, { meterId: a, postage: 1_000, mailpiece: MAIL });
      await restore(f.db, name);
      expect(await codeOf(createIndicium(f.service.ledger, { meterId: a, postage: 1_000, mailpiece: MAIL }))).to.equal('NO_MODULE');
    };

    it('after a rollback, the officer reinstates the module onto the restored database; a stale acceptance is refused', async () => {
      await rollBackOnePrint('ri');
      const serial = f.service.engines[0].hsm.serial;
      const row = await f.db.knex('modules').where({ module_serial: serial }).first();
      // the SO installs the officers (an SO login: not while this process holds the user login)
      await f.service.close();
      await installTestOfficers(f.labels[0]);
      f.service = await createService({ config: testConfig(f.labels), db: f.db });
      const engine = f.service.engines[0];
      // the officers approved a checkpoint the database does not hold: refused before anything changes
      const wrong = Buffer.alloc(40, 1);
      expect(await codeOf(f.service.ledger.reinstate({ moduleSerial: serial, officer: 'Test Officer', acceptCheckpoint: wrong, approvals: await approvalsFor(engine, wrong) }))).to.equal('CHECKPOINT_MISMATCH');
      expect(f.service.engines[0].status().state).to.equal('Inhibited');
      const rec = await f.service.ledger.reinstate({ moduleSerial: serial, officer: 'Test Officer', acceptCheckpoint: row.checkpoint, approvals: await approvalsFor(engine, row.checkpoint) });
      expect(rec?.reason).to.equal('reinstated by officer Test Officer, approved by Alice Officer, Bob Officer');
      expect(rec?.kind).to.equal('module-reinstated');
      expect(signedBy(f.service, rec as AuditRecord)).to.equal(true);
      expect(f.service.engines[0].status().state).to.equal('Idle');
      expect(await codeOf(createIndicium(f.service.ledger, { meterId: a, postage: 1_000, mailpiece: MAIL }))).to.equal('OK');
      expect(await codeOf(createIndicium(f.service.ledger, { meterId: b, postage: 1_000, mailpiece: MAIL }))).to.equal('OK');
      const report = await verifyJournal({ db: f.db.knex, hsm: f.service.engines[0].hsm });
      expect(report.findings).to.deep.equal([]);
      // and across a restart
      await f.service.close();
      f.service = await createService({ config: testConfig(f.labels), db: f.db });
      expect(f.service.engines[0].status().state).to.equal('Idle');
      expect(await codeOf(createIndicium(f.service.ledger, { meterId: a, postage: 1_000, mailpiece: MAIL }))).to.equal('OK');
    });

    it('the ceremony CLI: the SO installs the officers, each officer approves in their own token, the module is reinstated with the service stopped; refused without the approvals or while a service holds the lease', async () => {
      await rollBackOnePrint('cli');
      const serial = f.service.engines[0].hsm.serial;
      const hex = ((await f.db.knex('modules').where({ module_serial: serial }).first()).checkpoint as Buffer).toString('hex');
      const root = process.env.VBI_TEST_ROOT as string;
      const env = { ...process.env, DATABASE_URL: f.db.url, PKCS11_TOKEN_LABELS: f.labels[0], PKCS11_USER_PIN: TEST_USER_PIN, VBI_SO_PIN: TEST_SO_PIN, VBI_VAR_DIR: root };
      const ceremony = (args: string[], extra: Record<string, string> = {}) => run(process.execPath, [require.resolve('@vbi/server/bin/ceremony'), ...args,
        '--transcript-dir', join(root, 'ceremony')], { env: { ...env, ...extra } })
        .then((r) => ({ code: 0, out: r.stdout + r.stderr }), (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }));
      const officers = await testOfficers();
      const keyArgs: string[] = [];
      for (const o of officers) {
        const file = join(root, `${serial}-${o.label}.pub.pem`);
        writeFileSync(file, toPem('PUBLIC KEY', o.spki));
        keyArgs.push('--officer-key', `${o.name}=${file}`);
      }
      const installed = await ceremony(['install-officers', '--label', f.labels[0], '--officer', 'Module SO', '--threshold', '2', ...keyArgs]);
      expect(installed.code, installed.out).to.equal(0);
      expect(installed.out).to.contain('2 of 2 officers (Alice Officer, Bob Officer)');
      const request = join(root, `${serial}-request.json`);
      const asked = await ceremony(['approval-request', '--label', f.labels[0], '--accept-checkpoint', hex, '--out', request]);
      expect(asked.code, asked.out).to.equal(0);
      expect(JSON.parse(readFileSync(request, 'utf8'))).to.deep.include({ action: 'reinstate', moduleSerial: serial, acceptCheckpoint: hex });
      const approvalFiles: string[] = [];
      for (const o of officers) {
        const file = join(root, `${serial}-${o.label}.approval.json`);
        const signed = await ceremony(['approve', '--label', o.label, '--officer', o.name, '--request', request, '--out', file]);
        expect(signed.code, signed.out).to.equal(0);
        approvalFiles.push('--approval', file);
      }
      const reinstate = (extra: string[] = approvalFiles, envExtra: Record<string, string> = {}) => ceremony(['reinstate', '--label', f.labels[0], '--officer', 'Test Officer', '--accept-checkpoint', hex, ...extra], envExtra);
      const busy = await reinstate();
      expect(busy.code).to.equal(1);
      expect(busy.out).to.contain('MODULE_IN_USE');
      await f.service.close();
      const wrongPin = await reinstate(approvalFiles, { VBI_SO_PIN: 'not-the-officer' });
      expect(wrongPin.code).to.equal(1);
      const oneOfTwo = await reinstate(approvalFiles.slice(0, 2));
      expect(oneOfTwo.code).to.equal(1);
      expect(oneOfTwo.out).to.contain('OFFICER_APPROVAL_REQUIRED: 1 valid approval(s) of this statement, 2 of 2 officers needed');
      const ok = await reinstate();
      expect(ok.out).to.contain('reinstated');
      expect(ok.code).to.equal(0);
      f.service = await createService({ config: testConfig(f.labels), db: f.db });
      expect(f.service.engines[0].status().state).to.equal('Idle');
      expect(await codeOf(createIndicium(f.service.ledger, { meterId: a, postage: 1_000, mailpiece: MAIL }))).to.equal('OK');
      expect((await moduleEvents(f.db.knex)).map((r) => r.kind)).to.include.members(['module-inhibited', 'module-reinstated']);
    });

    it('a snapshot restored exactly one committed purchase back: inhibited at the next start, nothing signed', async () => {
      await snapshot(f.db, 'pvd1');
      await f.service.ledger.postageValueDownload({ meterId: a, amount: 50_000 });
      await f.service.close();
      await restore(f.db, 'pvd1');
      f.service = await createService({ config: testConfig(f.labels), db: f.db });
      await expectInhibited('rolled back');
      expect(await codeOf(createIndicium(f.service.ledger, { meterId: a, postage: 120_000, mailpiece: MAIL }))).to.equal('NO_MODULE');
      expect(await indicia(f.db.knex)).to.equal(1);
    });

    it("one meter's row put back and its later journal and indicia rows deleted, after another meter was served: PACKAGE_STALE", async () => {
      const k = f.db.knex;
      const oldRow = await k('meters').where({ meter_id: a }).first();
      const lastJournal = (await k('journal').where({ meter_id: a }).max({ id: 'journal_id' }).first())?.id as number;
      const lastIndicium = (await k('indicia').max({ id: 'indicium_id' }).first())?.id as number;
      await createIndicium(f.service.ledger, { meterId: a, postage: 90_000, mailpiece: MAIL });
      await createIndicium(f.service.ledger, { meterId: b, postage: 700, mailpiece: MAIL });
      await asInsider(k, async (trx) => {
        await trx('meters').where({ meter_id: a }).update({ package: oldRow.package, record_counter: oldRow.record_counter, ascending_register: oldRow.ascending_register, descending_register: oldRow.descending_register });
        await trx('journal').where({ meter_id: a }).where('journal_id', '>', lastJournal).del();
        await trx('indicia').where({ meter_id: a }).where('indicium_id', '>', lastIndicium).del();
      });
      const before = await indicia(k);
      expect(await codeOf(createIndicium(f.service.ledger, { meterId: a, postage: 90_000, mailpiece: MAIL }))).to.equal('PACKAGE_STALE');
      expect(await indicia(k)).to.equal(before);
      const stale = (await auditRecords(k)).filter((r) => r.kind === 'package-stale');
      expect(stale).to.have.length(1);
      expect(stale[0].details).to.deep.include({ meterId: a });
      expect(signedBy(f.service, stale[0])).to.equal(true);
      // the other meter is unaffected
      expect(await codeOf(createIndicium(f.service.ledger, { meterId: b, postage: 700, mailpiece: MAIL }))).to.equal('OK');
      expect(f.service.engines[0].status().state).to.equal('Idle');
    });

    it("an old journal row of the meter re-inserted as its newest: PACKAGE_STALE; with the old meter row put back too: still", async () => {
      const k = f.db.knex;
      const oldRow = await k('meters').where({ meter_id: a }).first();
      const oldJournal = await k('journal').where({ meter_id: a }).orderBy('journal_id', 'desc').first();
      await createIndicium(f.service.ledger, { meterId: a, postage: 90_000, mailpiece: MAIL });
      await createIndicium(f.service.ledger, { meterId: b, postage: 700, mailpiece: MAIL });
      const { journal_id: _omit, ...copy } = oldJournal;
      await asInsider(k, async (trx) => {
        await trx('journal').insert(copy);
      });
      expect(await codeOf(createIndicium(f.service.ledger, { meterId: a, postage: 9_000, mailpiece: MAIL }))).to.equal('PACKAGE_STALE');
      await asInsider(k, async (trx) => {
        await trx('meters').where({ meter_id: a }).update({ package: oldRow.package, record_counter: oldRow.record_counter, ascending_register: oldRow.ascending_register, descending_register: oldRow.descending_register });
      });
      expect(await codeOf(createIndicium(f.service.ledger, { meterId: a, postage: 90_000, mailpiece: MAIL }))).to.equal('PACKAGE_STALE');
      expect(await indicia(k)).to.equal(3);
      const stale = (await auditRecords(k)).filter((r) => r.kind === 'package-stale');
      expect(stale.map((r) => r.details.meterId)).to.deep.equal([a, a]);
      expect(stale[0].reason).to.contain('newest journal record');
      expect(stale[1].reason).to.contain('meter map');
      expect(stale.every((r) => signedBy(f.service, r))).to.equal(true);
    });

    it("the same, with the meter map's nodes on the meter's path put back too: PACKAGE_STALE; with the map row too: inhibited", async () => {
      const k = f.db.knex;
      await snapshot(f.db, 'one');
      await createIndicium(f.service.ledger, { meterId: a, postage: 90_000, mailpiece: MAIL });
      await createIndicium(f.service.ledger, { meterId: b, postage: 700, mailpiece: MAIL });
      await asInsider(k, async (trx) => {
        await trx.raw('UPDATE meters m SET package = s.package, record_counter = s.record_counter, ascending_register = s.ascending_register, descending_register = s.descending_register FROM one_meters s WHERE m.meter_id = s.meter_id AND m.meter_id = ?', [a]);
        await trx.raw('DELETE FROM journal WHERE meter_id = ? AND journal_id > (SELECT max(journal_id) FROM one_journal WHERE meter_id = ?)', [a, a]);
        // every map node as it was in the snapshot
        await trx.raw('DELETE FROM meter_map_nodes');
        await trx.raw('INSERT INTO meter_map_nodes SELECT * FROM one_meter_map_nodes');
      });
      expect(await codeOf(createIndicium(f.service.ledger, { meterId: a, postage: 90_000, mailpiece: MAIL }))).to.equal('PACKAGE_STALE');
      await asInsider(k, async (trx) => {
        await trx.raw('UPDATE meter_map m SET epoch = s.epoch, root = s.root FROM one_meter_map s WHERE m.shard = s.shard');
      });
      expect(await codeOf(createIndicium(f.service.ledger, { meterId: a, postage: 90_000, mailpiece: MAIL }))).to.equal('NO_MODULE');
      await expectInhibited('rolled back');
      expect(await indicia(k)).to.equal(3);
    });

    it("two meters' rows swapped, or only their slots: refused, nothing signed", async () => {
      const k = f.db.knex;
      const ra = await k('meters').where({ meter_id: a }).first();
      const rb = await k('meters').where({ meter_id: b }).first();
      const cols = (r: typeof ra) => ({ package: r.package, record_counter: r.record_counter, ascending_register: r.ascending_register, descending_register: r.descending_register, slot: r.slot });
      await k('meters').where({ meter_id: a }).update(cols(rb));
      await k('meters').where({ meter_id: b }).update(cols(ra));
      expect(await codeOf(createIndicium(f.service.ledger, { meterId: a, postage: 100, mailpiece: MAIL }))).to.be.oneOf(['PACKAGE_METER_MISMATCH', 'PACKAGE_STALE']);
      await k('meters').where({ meter_id: a }).update({ ...cols(ra), slot: rb.slot });
      await k('meters').where({ meter_id: b }).update({ ...cols(rb), slot: ra.slot });
      expect(await codeOf(createIndicium(f.service.ledger, { meterId: a, postage: 100, mailpiece: MAIL }))).to.equal('PACKAGE_STALE');
      expect(await codeOf(createIndicium(f.service.ledger, { meterId: b, postage: 100, mailpiece: MAIL }))).to.equal('PACKAGE_STALE');
      expect(await indicia(k)).to.equal(1);
      const refused = (await auditRecords(k)).filter((r) => r.kind === 'package-invalid' || r.kind === 'package-stale');
      expect(refused.length).to.equal(3);
      expect(refused.every((r) => signedBy(f.service, r))).to.equal(true);
      expect(f.service.engines[0].status().state).to.equal('Idle');
    });

    it("an interior node of the meter map edited: the meters under it are refused; the map row's root edited: inhibited", async () => {
      const k = f.db.knex;
      const slotA = (await k('meters').where({ meter_id: a }).first()).slot as number;
      // a node on A's proof path, three levels up, written (edited or inserted)
      await k('meter_map_nodes').insert({ shard: 0, level: 3, idx: Math.floor(slotA / 8) ^ 1, hash: Buffer.alloc(32, 0x5a) })
        .onConflict(['shard', 'level', 'idx']).merge(['hash']);
      expect(await codeOf(createIndicium(f.service.ledger, { meterId: a, postage: 100, mailpiece: MAIL }))).to.equal('PACKAGE_STALE');
      await k('meter_map').update({ root: Buffer.alloc(32, 0x11) });
      expect(await codeOf(createIndicium(f.service.ledger, { meterId: b, postage: 100, mailpiece: MAIL }))).to.equal('NO_MODULE');
      await expectInhibited('edited');
      expect(await indicia(k)).to.equal(1);
    });

    it("the module's checkpoint row deleted, or the map row deleted: inhibited", async () => {
      await f.db.knex('meter_map').del();
      expect(await codeOf(createIndicium(f.service.ledger, { meterId: a, postage: 100, mailpiece: MAIL }))).to.equal('NO_MODULE');
      await expectInhibited('rolled back');
    });

    it('a second process started on the same token and database gets MODULE_IN_USE and changes nothing; the first goes on', async () => {
      const ring = f.service.engines[0].ringEntries().map((e) => e.checkpoint.seq);
      const r = await run(process.execPath, [join(__dirname, '..', 'helpers', 'service-child.js'), f.db.url, ...f.labels], { env: process.env });
      expect(r.stdout.trim()).to.equal('MODULE_IN_USE');
      expect(f.service.engines[0].ringEntries().map((e) => e.checkpoint.seq)).to.deep.equal(ring);
      expect(await codeOf(createIndicium(f.service.ledger, { meterId: a, postage: 100, mailpiece: MAIL }))).to.equal('OK');
      expect(f.service.engines[0].status().state).to.equal('Idle');
      expect((await moduleEvents(f.db.knex)).map((x) => x.kind)).to.deep.equal([]);
    });
  });

  it("one meter's row restored from another database of the same deployment (same package keys): PACKAGE_STALE", async function () {
    requireClone(this);
    const labels = await provisionModules(2, 'dep');
    const f1 = await ledgerFixture({ labels: [labels[0]] });
    const f2 = await ledgerFixture({ labels: [labels[1]] });
    try {
      const meterId = 'SAME-METER-1';
      for (const f of [f1, f2]) {
        await f.metergen.createMeter({ meterId, maxDescendingRegister: 5_000_000 });
        await f.service.ledger.assignMeter({ accountId: f.accountId, meterId });
      }
      await f1.service.ledger.postageValueDownload({ meterId, amount: 1_000 });
      await f2.service.ledger.postageValueDownload({ meterId, amount: 4_000_000 });
      const rich = await f2.db.knex('meters').where({ meter_id: meterId }).first();
      await f1.db.knex('meters').where({ meter_id: meterId }).update({ package: rich.package, descending_register: rich.descending_register, record_counter: rich.record_counter });
      expect(await codeOf(createIndicium(f1.service.ledger, { meterId, postage: 1_000_000, mailpiece: MAIL }))).to.equal('PACKAGE_STALE');
      expect(await indicia(f1.db.knex)).to.equal(0);
    } finally {
      await f1.service.close();
      await f2.service.close();
    }
  });

  describe('two modules interleaved on the same meters', () => {
    let f: LedgerFixture;
    let a: string;
    beforeEach(async function () {
      requireClone(this);
      f = await ledgerFixture({ modules: 2 });
      a = (await f.newMeter(5_000_000)).meterId;
      await f.service.ledger.postageValueDownload({ meterId: a, amount: 100_000 });
      // concurrent commands spread over both modules (each picks the least busy)
      await Promise.all(Array.from({ length: 6 }, () => createIndicium(f.service.ledger, { meterId: a, postage: 100, mailpiece: MAIL })));
      const used = await f.db.knex('indicia').distinct('module_serial');
      expect(used.length).to.equal(2);
    });
    afterEach(() => f?.service.close());

    it('a snapshot one committed transaction back: both modules refuse (ring ahead / map older), nothing signed', async () => {
      await snapshot(f.db, 'two');
      await createIndicium(f.service.ledger, { meterId: a, postage: 100, mailpiece: MAIL });
      await restore(f.db, 'two');
      const before = await indicia(f.db.knex);
      expect(await codeOf(createIndicium(f.service.ledger, { meterId: a, postage: 100, mailpiece: MAIL }))).to.equal('NO_MODULE');
      expect(f.service.engines.map((e) => e.status().state)).to.deep.equal(['Inhibited', 'Inhibited']);
      expect(f.service.engines.map((e) => e.status().reason).join(' | ')).to.contain('rolled back');
      const inhibited = (await auditRecords(f.db.knex)).filter((r) => r.kind === 'module-inhibited');
      expect(inhibited.every((r) => signedBy(f.service, r))).to.equal(true);
      expect(await indicia(f.db.knex)).to.equal(before);
    });

    it("one meter's row put back: PACKAGE_STALE on either module, both stay in service", async () => {
      const old = await f.db.knex('meters').where({ meter_id: a }).first();
      await createIndicium(f.service.ledger, { meterId: a, postage: 99_000, mailpiece: MAIL });
      await f.db.knex('meters').where({ meter_id: a }).update({ package: old.package });
      for (let i = 0; i < 2; i++) {
        expect(await codeOf(createIndicium(f.service.ledger, { meterId: a, postage: 99_000, mailpiece: MAIL }))).to.equal('PACKAGE_STALE');
      }
      expect(f.service.engines.map((e) => e.status().state)).to.deep.equal(['Idle', 'Idle']);
      // conservation on the sealed packages sees the row's copy columns disagree with the package put back
      const c = await conservation(f.db.knex, { hsm: f.service.engines[0].hsm });
      expect(c.violations).to.have.length(1);
      expect(c.violations[0]).to.contain('differ from its sealed package');
    });
  });

  it('a fresh database presented to modules that have served another: inhibited at start', async () => {
    const f = await ledgerFixture();
    try {
      const { meterId } = await f.newMeter(1_000_000);
      await f.service.ledger.postageValueDownload({ meterId, amount: 1_000 });
      await f.service.close();
      const other = await freshDatabase();
      f.service = await createService({ config: testConfig(f.labels), db: other });
      expect(f.service.engines[0].status().state).to.equal('Inhibited');
      expect(f.service.engines[0].status().reason).to.contain('no checkpoint');
    } finally {
      await f.service.close();
    }
  });
});

describe('verify-journal finds and classifies what the insider did (offline)', function () {
  this.timeout(180_000);
  let f: LedgerFixture;
  let a: string;
  let b: string;
  beforeEach(async () => {
    ({ f, a, b } = await twoMeters(['a', 'b', 'a']));
  });
  afterEach(() => f.service.close());

  const verify = () => verifyJournal({ db: f.db.knex, hsm: f.service.engines[0].hsm });
  const kinds = async () => [...new Set((await verify()).findings.map((x) => x.kind))].sort();

  it('passes an honest journal, with conservation on the sealed packages', async () => {
    const r = await verify();
    expect(r.findings).to.deep.equal([]);
    expect(r.ok).to.equal(true);
    expect((await conservation(f.db.knex, { hsm: f.service.engines[0].hsm })).violations).to.deep.equal([]);
  });

  it("one meter's row put back with its later journal and indicium rows deleted: deleted rows, map mismatch", async () => {
    const k = f.db.knex;
    const oldRow = await k('meters').where({ meter_id: a }).first();
    const lastJournal = (await k('journal').where({ meter_id: a }).max({ id: 'journal_id' }).first())?.id as number;
    await createIndicium(f.service.ledger, { meterId: a, postage: 900, mailpiece: MAIL });
    await createIndicium(f.service.ledger, { meterId: b, postage: 900, mailpiece: MAIL });
    await asInsider(k, async (trx) => {
      await trx('meters').where({ meter_id: a }).update({ package: oldRow.package, ascending_register: oldRow.ascending_register, descending_register: oldRow.descending_register });
      await trx('journal').where({ meter_id: a }).where('journal_id', '>', lastJournal).del();
      await trx('indicia').where({ meter_id: a }).where('postage', 900).del();
    });
    expect(await kinds()).to.include.members(['deleted', 'map']);
  });

  it('a journal row copied in again: inserted; an indicium row deleted: indicium; two rows swapped: reordered', async () => {
    const k = f.db.knex;
    const rows = await k('journal').orderBy('journal_id');
    await asInsider(k, async (trx) => {
      const { journal_id: _omit, ...copy } = rows[rows.length - 1];
      await trx('journal').insert(copy);
    });
    expect(await kinds()).to.include('inserted');
    await asInsider(k, async (trx) => {
      await trx('journal').where({ journal_id: rows[rows.length - 1].journal_id }).del();
    });
    const copyRows = await k('journal').orderBy('journal_id');
    await asInsider(k, async (trx) => {
      // the copy (newest id) is now the only row of that record; make it "older" than its predecessor
      const last = copyRows[copyRows.length - 1];
      const prevSameModule = copyRows.filter((r) => r.module_serial === last.module_serial && r.journal_id !== last.journal_id).at(-1);
      await trx('journal').where({ journal_id: last.journal_id }).update({ journal_id: 1_000_000 });
      await trx('journal').where({ journal_id: prevSameModule.journal_id }).update({ journal_id: 2_000_000 });
    });
    expect(await kinds()).to.include('reordered');
    const one = await k('indicia').orderBy('indicium_id').first();
    await k('indicia').where({ indicium_id: one.indicium_id }).del();
    expect(await kinds()).to.include('indicium');
  });

  it("the map row's root edited: map", async () => {
    await f.db.knex('meter_map').update({ root: Buffer.alloc(32, 3) });
    expect(await kinds()).to.deep.equal(['map']);
  });
});
