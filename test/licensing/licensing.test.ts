import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { ServerFixture, serverFixture } from '../helpers/server';
import { RawClient } from '../helpers/raw-client';
import { asInsider, MAIL } from '../helpers/ledger';
import { createIndicium } from '../helpers/ledger-commands';
import { provisionToken, startModule, uniqueLabel } from '../helpers/hsm';
import { addCredential } from '@vbi/server/api/credentials';
import { auditRecords } from '@vbi/server/ledger/audit-store';
import { conservation } from '@vbi/server/ledger/conservation';
import { verifyJournal } from '@vbi/server/ledger/journal-verify';
import { openPackage, sealPackage, PACKAGE_FORMAT_VERSION, PACKAGE_MAGIC } from '@vbi/server/module/package-seal';
import { SUITE_ID } from '@vbi/server/hsm/mechanisms';
import { CryptoModule } from '@vbi/server/hsm/crypto-module';
import { decodePublic, encodePublic, encodeSecrets, newPackage, PsdPackage, PUBLIC_TAGS } from '@vbi/core/psd/psd-package';
import { decodeTlv, encodeTlv, TlvError } from '@vbi/core/psd/tlv';
import { planIndicium } from '@vbi/server/module/commands/create-indicium';
import { assignMeter } from '@vbi/server/module/commands/assign-meter';
import { DevLicensingAuthority, devRefusal } from '@vbi/server/licensing/dev-authority';
import { dailyActivity } from '@vbi/server/reports/daily-report';
import { databaseSource } from '@vbi/server/reports/report-source';
import { isVbiError } from '@vbi/core/errors';
import { passwordSecret } from '@vbi/core/protocol/messages';

const PASSWORD = 'licence test password';
/** A licensing pass that had no revocation to report. */
const NO_REVOCATIONS = { reported: 0, unreported: 0, unknown: 0 };
const NO_EVENTS = { revoked: 0, unknown: 0 };

/** A registered mailer over raw HTTP: the 1c answer, a purchase of `funds` (if any) and an open session. */
async function mailer(f: ServerFixture, opts: { zip?: string; funds?: number } = {}) {
  const c = new RawClient(f.url);
  const done = await c.register(PASSWORD, 'Licence Mailer', opts.zip ?? '20260');
  if (opts.funds) {
    const buy = await c.op('/v1/purchases', 'purchase', { amount: opts.funds, payment: { kind: 'card', token: 'tok_approve' } }, { 'Idempotency-Key': `buy-${c.meterId}` });
    expect(buy.status, JSON.stringify(buy.json)).to.equal(200);
  }
  const open = await c.op('/v1/sessions', 'session-open', {
    moduleSerial: c.moduleSerial, encryptedPasswordSecret: c.encrypt(passwordSecret(PASSWORD, c.meterId)), encryptedSessionKey: c.encrypt(randomBytes(32)),
  });
  expect(open.status, JSON.stringify(open.json)).to.equal(200);
  return { c, sessionId: open.json.result.sessionId as string, licence: done.licence as { status: string; licenceId?: string; reason?: string } };
}

const item = (c: RawClient, sessionId: string, postage: number) => ({
  destinationZip: '205000001', postage, ...c.dynamicPassword(sessionId, 'print', { destinationZip: '205000001', postage }),
});

/** Everything of a meter that a refused print must leave as it was. */
async function meterState(f: ServerFixture, meterId: string) {
  const k = f.service.db.knex;
  return {
    meter: await k('meters').where({ meter_id: meterId }).first('ascending_register', 'descending_register', 'record_counter', 'package'),
    journal: Number((await k('journal').where({ meter_id: meterId }).count({ n: '*' }).first())?.n),
    indicia: Number((await k('indicia').where({ meter_id: meterId }).count({ n: '*' }).first())?.n),
    batches: Number((await k('print_batches').where({ meter_id: meterId }).count({ n: '*' }).first())?.n),
    payments: await k('payments').where({ meter_id: meterId }).orderBy('payment_id').select('payment_id', 'status'),
  };
}

async function packageOf(f: ServerFixture, meterId: string): Promise<PsdPackage> {
  const row = await f.service.db.knex('meters').where({ meter_id: meterId }).first('package');
  return openPackage(f.service.engines[0].hsm, row.package, meterId);
}

const requestOf = (f: ServerFixture, meterId: string) => f.service.db.knex('license_requests').where({ meter_id: meterId }).first();

/** A print that must be refused as a whole, before anything is signed or debited. */
async function expectPrintRefused(f: ServerFixture, c: RawClient, sessionId: string, licence: 'none' | 'revoked'): Promise<void> {
  const before = await meterState(f, c.meterId);
  const challenge = c.challenge;
  const r = await c.op('/v1/indicia', 'print', { sessionId, items: [item(c, sessionId, 730), item(c, sessionId, 1_250)] }, { 'Idempotency-Key': `print-${randomBytes(4).toString('hex')}` });
  expect([r.status, r.json.error?.code, r.json.error?.details?.licence]).to.deep.equal([403, 'METER_NOT_LICENSED', licence]);
  expect(await meterState(f, c.meterId)).to.deep.equal(before);
  // nothing changed in the module either: the same challenge is still the valid one
  expect(c.challenge).to.equal(challenge);
  const balance = await c.op('/v1/balance', 'balance', {});
  expect(balance.status, JSON.stringify(balance.json)).to.equal(200);
}

describe('licensing: a meter prints only once the postal licensing authority licensed it', function () {
  this.timeout(180_000);
  let f: ServerFixture;
  let operator: string;
  let refused: Awaited<ReturnType<typeof mailer>>;

  before(async () => {
    f = await serverFixture();
    operator = (await addCredential(f.service.db.knex, 'operator', 'Olga Operator')).token;
  });
  after(async () => {
    await f?.close();
  });

  const asOperator = (method: string, path: string, token: string | null, body?: unknown) => fetch(`${f.url}${path}`, {
    method, headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: body === undefined ? undefined : JSON.stringify(body),
  }).then(async (r) => ({ status: r.status, json: await r.json() as Record<string, any> }));

  it('registered over HTTP: licensed by the dev authority before step 1c answers, the licence sealed in its package; it prints', async () => {
    const { c, sessionId, licence } = await mailer(f, { funds: 5_000 });
    expect(licence.status).to.equal('licensed');
    expect(licence.licenceId).to.match(/^DEV-20260-\d{6}$/);
    const pkg = await packageOf(f, c.meterId);
    expect([pkg.licence, pkg.licenceId]).to.deep.equal(['licensed', licence.licenceId]);
    expect(await requestOf(f, c.meterId)).to.deep.include({ status: 'licensed', licence_id: licence.licenceId, attempts: 0 });
    const types = (await f.service.db.knex('journal').where({ meter_id: c.meterId }).orderBy('journal_id').select('tx_type')).map((r) => r.tx_type);
    expect(types.slice(0, 5)).to.deep.equal(['meter-create', 'meter-certify', 'meter-assign', 'registration', 'license']);
    const r = await c.op('/v1/indicia', 'print', { sessionId, items: [item(c, sessionId, 730)] }, { 'Idempotency-Key': 'print-licensed' });
    expect(r.status, JSON.stringify(r.json)).to.equal(200);
    expect(r.json.items.map((i: { status: string }) => i.status)).to.deep.equal(['printed']);
    expect(r.json.registers).to.deep.equal({ ascending: 730, descending: 4_270 });
  });

  it('refused by the authority (licensing ZIP 00000): 1c says why; postage may be bought, but prints and indicia are refused METER_NOT_LICENSED with nothing debited', async () => {
    refused = await mailer(f, { zip: '00000', funds: 4_000 });
    const { c, sessionId, licence } = refused;
    expect(licence).to.deep.equal({ status: 'refused', reason: "licensing ZIP '00000' is not the 5-digit ZIP of a post office" });
    expect(await requestOf(f, c.meterId)).to.deep.include({ status: 'refused', licence_id: null, reason: licence.reason, attempts: 1 });
    expect((await packageOf(f, c.meterId)).licence).to.equal('none');
    await expectPrintRefused(f, c, sessionId, 'none');
    // the engine's own one-indicium command is refused by the module the same way
    const before = await meterState(f, c.meterId);
    const direct = await createIndicium(f.service.ledger, { meterId: c.meterId, postage: 500, mailpiece: MAIL }).then(() => null, (e) => e);
    expect(isVbiError(direct, 'METER_NOT_LICENSED')).to.equal(true);
    expect(await meterState(f, c.meterId)).to.deep.equal(before);
    expect(before.meter.descending_register).to.equal(4_000);
    expect(before.indicia).to.equal(0);
    // the pass leaves a decided request alone
    const applications = (await f.service.db.knex('license_requests').where({ meter_id: c.meterId }).first('attempts')).attempts;
    await f.server.licensingPass();
    expect((await requestOf(f, c.meterId)).attempts).to.equal(applications);
  });

  it('an insider who edits the licence request (licensed, or a good ZIP sent again) does not make the meter print: its package says otherwise', async () => {
    const { c, sessionId } = refused;
    const k = f.service.db.knex;
    await asInsider(k, async (trx) => {
      await trx('license_requests').where({ meter_id: c.meterId }).update({ status: 'licensed', licence_id: 'FORGED-0001', reason: null });
    });
    await expectPrintRefused(f, c, sessionId, 'none');
    // the request sent again with a licensing ZIP the authority approves: the licence is for
    // another ZIP than the one the meter prints, and the module refuses it
    await asInsider(k, async (trx) => {
      await trx('license_requests').where({ meter_id: c.meterId }).update({ status: 'pending', licence_id: null, licensing_zip: '20260' });
      await trx('accounts').whereIn('account_id', trx('license_requests').where({ meter_id: c.meterId }).select('account_id')).update({ licensing_zip: '20260' });
    });
    expect(await f.server.licensingPass()).to.deep.equal({ licensed: 0, refused: 1, pending: 0, revocations: NO_REVOCATIONS, fromAuthority: NO_EVENTS });
    const row = await requestOf(f, c.meterId);
    expect(row.status).to.equal('refused');
    expect(row.reason).to.match(/^approved by the authority as DEV-20260-\d{6} but not applied: BAD_REQUEST: the licence is for licensing ZIP 20260; meter \S+ prints 00000$/);
    expect((await packageOf(f, c.meterId)).licence).to.equal('none');
    await expectPrintRefused(f, c, sessionId, 'none');
    expect(await k('journal').where({ meter_id: c.meterId, tx_type: 'license' })).to.deep.equal([]);
  });

  it('revoked by an operator (audited): prints, corrections and downloads refused, refunds still work; final; only with an operator credential', async () => {
    const { c, sessionId } = await mailer(f, { funds: 6_000 });
    const printed = await c.op('/v1/indicia', 'print', { sessionId, items: [item(c, sessionId, 1_000)] }, { 'Idempotency-Key': 'before-revoke' });
    expect(printed.status, JSON.stringify(printed.json)).to.equal(200);
    const path = `/v1/operator/meters/${c.meterId}/revoke-licence`;
    expect((await asOperator('POST', path, null, { reason: 'x' })).json.error.code).to.equal('OPERATOR_UNKNOWN');
    expect((await asOperator('POST', path, operator, {})).json.error.code).to.equal('VALIDATION_FAILED');
    expect((await packageOf(f, c.meterId)).licence).to.equal('licensed');

    const revoked = await asOperator('POST', path, operator, { reason: 'CMLS revoked licence: mailer moved out of the district' });
    expect(revoked.status, JSON.stringify(revoked.json)).to.equal(200);
    expect(revoked.json).to.deep.include({ licence: 'revoked' });
    expect(revoked.json.registers).to.deep.include({ ascendingRegister: 1_000, descendingRegister: 5_000 });
    expect((await packageOf(f, c.meterId)).licence).to.equal('revoked');
    expect(await requestOf(f, c.meterId)).to.deep.include({ status: 'revoked' });
    const audit = (await auditRecords(f.service.db.knex)).filter((r) => r.details.meterId === c.meterId);
    expect(audit.map((r) => r.kind)).to.deep.equal(['meter-licence-revoked']);
    expect(audit[0].reason).to.match(/^licence revoked by operator Olga Operator \(op-[0-9a-f]{16}\): CMLS revoked licence/);

    await expectPrintRefused(f, c, sessionId, 'revoked');
    const original = Number(printed.json.items[0].indiciumId);
    const before = await meterState(f, c.meterId);
    const corr = await c.op('/v1/corrections', 'correction', { sessionId, originalIndiciumId: original, item: item(c, sessionId, 100) }, { 'Idempotency-Key': 'corr-revoked' });
    expect([corr.status, corr.json.error?.code]).to.deep.equal([403, 'METER_NOT_LICENSED']);
    const buy = await c.op('/v1/purchases', 'purchase', { amount: 1_000, payment: { kind: 'card', token: 'tok_approve' } }, { 'Idempotency-Key': 'buy-revoked' });
    expect([buy.status, buy.json.error?.code]).to.deep.equal([403, 'METER_NOT_LICENSED']);
    expect(await meterState(f, c.meterId)).to.deep.equal(before); // nobody charged, nothing debited
    const refund = await c.op('/v1/refunds', 'refund', { kind: 'partial', amount: 5, reason: 'spoiled label' });
    expect(refund.status, JSON.stringify(refund.json)).to.equal(200);
    expect(refund.json.registers).to.deep.equal({ ascending: 1_000, descending: 4_995 });

    const again = await asOperator('POST', path, operator, { reason: 'twice' });
    expect([again.status, again.json.error.code]).to.deep.equal([409, 'LICENCE_REVOKED']);
    // a revoked licence is not granted again, even if the authority approved a request for it
    const granted = await f.service.ledger.license({ meterId: c.meterId, licenceId: 'DEV-20260-999999', licensingZip: '20260' }).then(() => null, (e) => e);
    expect(isVbiError(granted, 'LICENCE_REVOKED')).to.equal(true);

    // the operator's view and tool
    const list = await asOperator('GET', `/v1/operator/licence-requests?meterId=${c.meterId}`, operator);
    expect(list.json.requests.map((r: { status: string }) => r.status)).to.deep.equal(['revoked']);
    expect((await asOperator('GET', '/v1/operator/licence-requests?status=refused', operator)).json.requests.map((r: { meterId: string }) => r.meterId)).to.include(refused.c.meterId);
    expect((await asOperator('GET', '/v1/operator/licence-requests', null)).status).to.equal(401);
    const tool = (args: string[]) => new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => execFile(process.execPath, [require.resolve('@vbi/server/bin/operator'), ...args],
      { env: { PATH: process.env.PATH ?? '', VBI_SERVER: f.url, VBI_OPERATOR_TOKEN: operator } },
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr })));
    const shown = await tool(['licences', '--meter', c.meterId]);
    expect(shown.code, shown.stderr).to.equal(0);
    expect(JSON.parse(shown.stdout).requests[0]).to.deep.include({ meterId: c.meterId, status: 'revoked' });
    const twice = await tool(['revoke-licence', c.meterId, '--reason', 'again']);
    expect([twice.code, twice.stderr.split(':')[0]]).to.deep.equal([1, 'LICENCE_REVOKED']);
    // the day's report lists the licence movements
    const day = await dailyActivity(databaseSource(f.service.db.knex), new Date().toISOString().slice(0, 10));
    expect(day.movements.rows.filter((m) => m.meterId === c.meterId).map((m) => m.type)).to.include.members(['license', 'revoke-licence']);
  });

  it('the journal and conservation still verify after licences, refusals and a revocation', async () => {
    const k = f.service.db.knex;
    expect((await verifyJournal({ db: k, hsm: f.service.engines[0].hsm })).ok).to.equal(true);
    const c = await conservation(k, { hsm: f.service.engines[0].hsm });
    expect(c.violations).to.deep.equal([]);
    expect(c.system.left).to.equal(c.system.right);
  });
});

describe('licensing: an authority that answers later', function () {
  this.timeout(180_000);
  let f: ServerFixture;
  let operator: string;
  let licensedMeter = '';
  const authority = new DevLicensingAuthority({ linkFailures: 1, pendingAnswers: 1, revocationLinkFailures: 1 });

  before(async () => {
    f = await serverFixture({ licensing: authority, licensingTimer: false });
    operator = (await addCredential(f.service.db.knex, 'operator', 'Olga Operator')).token;
  });
  after(async () => {
    await f?.close();
  });

  it('no answer at step 1c, then "pending": prints refused until a licensing pass gets the approval, then the meter prints', async () => {
    const { c, sessionId, licence } = await mailer(f, { funds: 3_000 });
    licensedMeter = c.meterId;
    expect(licence).to.deep.equal({ status: 'pending' });
    const first = await requestOf(f, c.meterId);
    expect(first).to.deep.include({ status: 'pending', attempts: 1, authority_ref: null });
    expect(first.last_error).to.equal('dev: dev authority: no answer (link failure)');
    await expectPrintRefused(f, c, sessionId, 'none');

    expect(await f.server.licensingPass()).to.deep.equal({ licensed: 0, refused: 0, pending: 1, revocations: NO_REVOCATIONS, fromAuthority: NO_EVENTS });
    expect(await requestOf(f, c.meterId)).to.deep.include({ status: 'pending', attempts: 2, last_error: null });
    expect((await requestOf(f, c.meterId)).authority_ref).to.match(/^DEV-CASE-\d+$/);
    await expectPrintRefused(f, c, sessionId, 'none');

    expect(await f.server.licensingPass()).to.deep.equal({ licensed: 1, refused: 0, pending: 0, revocations: NO_REVOCATIONS, fromAuthority: NO_EVENTS });
    const row = await requestOf(f, c.meterId);
    expect(row.status).to.equal('licensed');
    expect((await packageOf(f, c.meterId)).licenceId).to.equal(row.licence_id);
    // the same application every time: the authority's idempotency key is our request id
    const sent = authority.applications.filter((a) => a.meterId === c.meterId);
    expect(sent.map((a) => a.requestId)).to.deep.equal([row.request_id, row.request_id, row.request_id].map(Number));
    expect(sent[0]).to.deep.include({ licensingZip: '20260', accountName: 'Licence Mailer', returnAddress: ['Raw Mailer', '1 Test St', 'Washington DC 20260'] });
    expect(sent[0].certSerial).to.match(/^[0-9a-f]+$/);

    const r = await c.op('/v1/indicia', 'print', { sessionId, items: [item(c, sessionId, 730)] }, { 'Idempotency-Key': 'after-pass' });
    expect(r.status, JSON.stringify(r.json)).to.equal(200);
    expect(r.json.items.map((i: { status: string }) => i.status)).to.deep.equal(['printed']);
    expect(r.json.registers).to.deep.equal({ ascending: 730, descending: 2_270 });
    expect(await f.server.licensingPass()).to.deep.equal({ licensed: 0, refused: 0, pending: 0, revocations: NO_REVOCATIONS, fromAuthority: NO_EVENTS });
  });

  it('an operator\'s revocation of a licensed meter is reported to the authority once, with its licence number and reason; a link failure leaves it for the next pass', async () => {
    const licenceId = (await requestOf(f, licensedMeter)).licence_id as string;
    const revoke = await fetch(`${f.url}/v1/operator/meters/${licensedMeter}/revoke-licence`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${operator}` }, body: JSON.stringify({ reason: 'the post withdrew the licence' }),
    });
    expect(revoke.status).to.equal(200);
    const report = () => f.service.db.knex('licence_revocation_reports').where({ meter_id: licensedMeter }).first();
    // written in the revocation's own transaction, before anything is sent
    expect(await report()).to.deep.include({ status: 'due', licence_id: licenceId, reason: 'the post withdrew the licence', attempts: 0, reported_at: null });
    expect(authority.revocations.size).to.equal(0);

    expect(await f.server.licensingPass()).to.deep.equal({ licensed: 0, refused: 0, pending: 0, revocations: { reported: 0, unreported: 1, unknown: 0 }, fromAuthority: NO_EVENTS });
    expect(await report()).to.deep.include({ status: 'due', attempts: 1, last_error: 'dev: dev authority: no answer (link failure)' });
    expect(authority.revocations.size).to.equal(0);

    expect(await f.server.licensingPass()).to.deep.equal({ licensed: 0, refused: 0, pending: 0, revocations: { reported: 1, unreported: 0, unknown: 0 }, fromAuthority: NO_EVENTS });
    const row = await report();
    expect(row).to.deep.include({ status: 'reported', attempts: 2, last_error: null });
    expect(row.reported_at).to.be.instanceOf(Date);
    const revokedAt = ((await requestOf(f, licensedMeter)).revoked_at as Date).toISOString();
    expect([...authority.revocations.values()]).to.deep.equal([{ meterId: licensedMeter, licenceId, reason: 'the post withdrew the licence', revokedAt }]);

    expect(await f.server.licensingPass()).to.deep.equal({ licensed: 0, refused: 0, pending: 0, revocations: NO_REVOCATIONS, fromAuthority: NO_EVENTS });
    expect(authority.reports).to.have.length(1);
  });

  it('a meter revoked before the authority licensed it has no licence to report: nothing is queued or sent, and its request is not submitted again', async () => {
    const { c, licence } = await mailer(f);
    expect(licence).to.deep.equal({ status: 'pending' });
    expect((await packageOf(f, c.meterId)).licenceId).to.equal('');
    const revoked = await f.service.ledger.revokeLicence({ meterId: c.meterId, operator: 'Olga Operator', reason: 'applied by mistake' });
    expect([revoked.licence, revoked.licenceId]).to.deep.equal(['revoked', '']);
    expect(await f.service.db.knex('licence_revocation_reports').where({ meter_id: c.meterId })).to.deep.equal([]);
    const submitted = authority.applications.length;
    expect(await f.server.licensingPass()).to.deep.equal({ licensed: 0, refused: 0, pending: 0, revocations: NO_REVOCATIONS, fromAuthority: NO_EVENTS });
    expect(authority.applications.length).to.equal(submitted);
    expect(authority.reports.map((r) => r.meterId)).not.to.include(c.meterId);
    expect(await requestOf(f, c.meterId)).to.deep.include({ status: 'revoked' });
  });
});

describe("licensing: the authority's own revocations, read from its event feed", function () {
  this.timeout(180_000);
  let f: ServerFixture;
  const authority = new DevLicensingAuthority({ eventsPerPage: 2 });
  let operator: string;

  before(async () => {
    f = await serverFixture({ licensing: authority, licensingTimer: false });
    operator = (await addCredential(f.service.db.knex, 'operator', 'Olga Operator')).token;
  });
  const operatorGet = (path: string, token: string | null = operator) => fetch(`${f.url}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} })
    .then(async (r) => ({ status: r.status, json: await r.json() as Record<string, any> }));
  after(async () => {
    await f?.close();
  });

  it('each revoked licence is revoked in its meter\'s package (audited as the authority\'s, not reported back); an unknown licence is kept for the operator; each event is applied once', async () => {
    const one = await mailer(f, { funds: 3_000 });
    const two = await mailer(f);
    expect([one.licence.status, two.licence.status]).to.deep.equal(['licensed', 'licensed']);
    authority.revoke(one.licence.licenceId!, 'LICENCE_WITHDRAWN: the post office withdrew the licence');
    authority.revoke('DEV-99999-000001', 'LICENCE_WITHDRAWN: not this vendor\'s');
    authority.revoke(two.licence.licenceId!, 'LICENCE_WITHDRAWN: the mailer moved');
    // three events on two pages, read in one pass
    expect((await f.server.licensingPass()).fromAuthority).to.deep.equal({ revoked: 2, unknown: 1 });
    await expectPrintRefused(f, one.c, one.sessionId, 'revoked');
    expect((await packageOf(f, two.c.meterId)).licence).to.equal('revoked');
    expect((await requestOf(f, one.c.meterId)).reason).to.equal('revoked by the licensing authority (dev): LICENCE_WITHDRAWN: the post office withdrew the licence');
    // the authority knows: nothing is queued to report back to it
    expect(await f.service.db.knex('licence_revocation_reports').whereIn('meter_id', [one.c.meterId, two.c.meterId])).to.deep.equal([]);
    const audit = (await auditRecords(f.service.db.knex)).filter((r) => r.kind === 'meter-licence-revoked');
    expect(audit.map((r) => [r.details.meterId, r.details.authority])).to.deep.equal([[one.c.meterId, 'dev'], [two.c.meterId, 'dev']]);
    expect(await f.service.db.knex('licence_events_unmatched').select('authority', 'licence_id')).to.deep.equal([{ authority: 'dev', licence_id: 'DEV-99999-000001' }]);
    expect(await f.service.db.knex('licence_event_cursors').where({ authority: 'dev' }).first('cursor')).to.deep.equal({ cursor: '3' });
    // read again from its cursor: nothing new; the same licence revoked again by the authority: already revoked, nothing changes
    expect((await f.server.licensingPass()).fromAuthority).to.deep.equal({ revoked: 0, unknown: 0 });
    const journal = Number((await f.service.db.knex('journal').count({ n: '*' }).first())?.n);
    authority.revoke(one.licence.licenceId!, 'LICENCE_WITHDRAWN: again');
    expect((await f.server.licensingPass()).fromAuthority).to.deep.equal({ revoked: 0, unknown: 0 });
    expect(Number((await f.service.db.knex('journal').count({ n: '*' }).first())?.n)).to.equal(journal);
    expect(await f.service.db.knex('licence_event_cursors').where({ authority: 'dev' }).first('cursor')).to.deep.equal({ cursor: '4' });

    // the operator sees the unknown licence, and each request with its revocation report (none: the authority revoked these)
    const unmatched = await operatorGet('/v1/operator/licence-events/unmatched');
    expect(unmatched.json.events.map((e: { authority: string; licenceId: string; reason: string }) => [e.authority, e.licenceId, e.reason]))
      .to.deep.equal([['dev', 'DEV-99999-000001', "LICENCE_WITHDRAWN: not this vendor's"]]);
    expect((await operatorGet('/v1/operator/licence-events/unmatched', null)).status).to.equal(401);
    const tool = await new Promise<{ code: number; stdout: string }>((resolve) => execFile(process.execPath, [require.resolve('@vbi/server/bin/operator'), 'licence-events'],
      { env: { PATH: process.env.PATH ?? '', VBI_SERVER: f.url, VBI_OPERATOR_TOKEN: operator } }, (err, stdout) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout })));
    expect(tool.code).to.equal(0);
    expect(JSON.parse(tool.stdout).events.map((e: { licenceId: string }) => e.licenceId)).to.deep.equal(['DEV-99999-000001']);
    expect((await operatorGet(`/v1/operator/licence-requests?meterId=${one.c.meterId}`)).json.requests.map((r: { status: string; revocationReport: unknown }) => [r.status, r.revocationReport]))
      .to.deep.equal([['revoked', null]]);
  });

  it('a revocation whose meter the module refuses for good (its row is gone) is skipped and does not hold back the next', async () => {
    const gone = await mailer(f);
    const next = await mailer(f);
    // the insider deletes a meter row: its licence request stays
    await asInsider(f.service.db.knex, (trx) => trx('meters').where({ meter_id: gone.c.meterId }).del());
    authority.revoke(gone.licence.licenceId!, 'LICENCE_WITHDRAWN: first');
    authority.revoke(next.licence.licenceId!, 'LICENCE_WITHDRAWN: second');
    expect((await f.server.licensingPass()).fromAuthority).to.deep.equal({ revoked: 1, unknown: 1 });
    expect((await packageOf(f, next.c.meterId)).licence).to.equal('revoked');
    expect((await f.server.licensingPass()).fromAuthority).to.deep.equal({ revoked: 0, unknown: 0 });
  });

  it("an operator's revocation shows its report to the authority in the request list: due, then reported", async () => {
    const m = await mailer(f);
    await f.service.ledger.revokeLicence({ meterId: m.c.meterId, operator: 'Olga Operator', reason: 'mailer left' });
    const report = async () => (await operatorGet(`/v1/operator/licence-requests?meterId=${m.c.meterId}`)).json.requests[0].revocationReport;
    expect(await report()).to.deep.equal({ status: 'due', attempts: 0, lastError: null, reportedAt: null });
    expect((await f.server.licensingPass()).revocations).to.deep.equal({ reported: 1, unreported: 0, unknown: 0 });
    expect(await report()).to.deep.include({ status: 'reported', attempts: 1, lastError: null }).and.have.property('reportedAt').that.is.a('string');
  });
});

describe('licensing: the package and the dev authority', function () {
  this.timeout(60_000);
  const label = uniqueLabel('lic');
  let m: CryptoModule;
  before(async () => {
    await provisionToken(label);
    m = await startModule(label);
  });
  after(() => m.close());

  /** A meter package as it was while printing before licensing existed. */
  function printingMeter(): PsdPackage {
    const base = newPackage({ meterId: 'M-OLD-1', maxDescendingRegister: 1_000_000, licensingZip: '20260' });
    return {
      ...base,
      state: 'active', recordCounter: 12, descendingRegister: 10_000, ascendingRegister: 2_000,
      indiciumCertSerial: '0a1b2c', indiciumKeyAlgorithm: 'ec-p256', indiciumKeyExpiry: Date.now() + 86_400_000,
      secrets: { ...base.secrets, wrappedIndiciumKey: randomBytes(40) },
    };
  }

  /** Sealed as the code before licensing sealed it: the public section ends with tag 13 (no licence tags). */
  async function sealedBeforeLicensing(pkg: PsdPackage): Promise<Buffer> {
    const fields = decodeTlv(encodePublic(pkg), Object.values(PUBLIC_TAGS));
    const pub = encodeTlv([...fields.entries()].filter(([tag]) => tag < 14));
    const header = Buffer.from([...PACKAGE_MAGIC, PACKAGE_FORMAT_VERSION, SUITE_ID[m.suite]]);
    const secret = await m.encryptSecrets({ plaintext: encodeSecrets(pkg.secrets), aad: Buffer.concat([header, pub]) });
    const len = (n: number) => Buffer.from([n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
    const body = Buffer.concat([header, len(pub.length), pub, len(secret.length), secret]);
    const mac = await m.mac(body);
    return Buffer.concat([body, Buffer.from([mac.length]), mac]);
  }

  it('a package sealed before licensing (no tag 15) opens as licensed — grandfathered — and prints; sealed again it carries the tag', async () => {
    const old = await sealedBeforeLicensing({ ...printingMeter(), licence: 'none' });
    const opened = await openPackage(m, old, 'M-OLD-1');
    expect([opened.licence, opened.licenceId]).to.deep.equal(['licensed', '']);
    expect(planIndicium(opened, { postage: 500, mailpiece: MAIL }, Date.now()).next).to.deep.include({ ascendingRegister: 2_500, descendingRegister: 9_500 });
    const resealed = await sealPackage(m, opened);
    expect(resealed.length).to.be.greaterThan(old.length);
    expect(await openPackage(m, resealed, 'M-OLD-1')).to.deep.include({ licence: 'licensed', licenceId: '' });
    // packages made from now on carry 'none' explicitly, and a meter without a licence is refused
    expect(newPackage({ meterId: 'M-NEW-1', maxDescendingRegister: 1 }).licence).to.equal('none');
    const none = (() => { try { planIndicium({ ...opened, licence: 'none' }, { postage: 500, mailpiece: MAIL }, Date.now()); return null; } catch (e) { return e; } })();
    expect(isVbiError(none, 'METER_NOT_LICENSED')).to.equal(true);
  });

  it('a pool meter sealed before licensing is not grandfathered once it is handed out: assignment leaves it unlicensed (a revoked one stays revoked)', async () => {
    const pool = await openPackage(m, await sealedBeforeLicensing({ ...printingMeter(), state: 'unassigned' }), 'M-OLD-1');
    expect(pool.licence).to.equal('licensed');
    const ctx = { hsm: m, now: Date.now(), checkpointSeq: 1 };
    expect((await assignMeter({ licensingZip: '20260' })(pool, ctx)).package).to.deep.include({ state: 'active', licence: 'none', licenceId: '' });
    expect((await assignMeter({ licensingZip: '20260' })({ ...pool, licence: 'revoked' }, ctx)).package.licence).to.equal('revoked');
  });

  it('one encoding: the licence state without its id (or an unknown state) is refused', () => {
    const pub = encodePublic({ ...printingMeter(), licence: 'revoked', licenceId: 'CMLS-77' });
    expect(decodePublic(pub)).to.deep.include({ licence: 'revoked', licenceId: 'CMLS-77' });
    const fields = decodeTlv(pub, Object.values(PUBLIC_TAGS));
    const without16 = encodeTlv([...fields.entries()].filter(([tag]) => tag !== PUBLIC_TAGS.licenceId));
    expect(() => decodePublic(without16)).to.throw(TlvError, /licence state and licence id come together/);
    const unknown = encodeTlv([...fields.entries()].map(([tag, v]) => [tag, tag === PUBLIC_TAGS.licence ? Buffer.from([3]) : v]));
    expect(() => decodePublic(unknown)).to.throw(TlvError, /unknown licence state/);
    expect(() => encodePublic({ ...printingMeter(), licenceId: 'has space' })).to.throw(TlvError);
  });

  it('the dev authority refuses what the real one would refuse outright and approves the rest', () => {
    const ok = { licensingZip: '20260', accountName: 'Acme', returnAddress: ['Acme', '1 Main St'] };
    for (const [over, reason] of [
      [{}, null],
      [{ licensingZip: '00000' }, "licensing ZIP '00000' is not the 5-digit ZIP of a post office"],
      [{ licensingZip: '2026' }, "licensing ZIP '2026' is not the 5-digit ZIP of a post office"],
      [{ licensingZip: '2026a' }, "licensing ZIP '2026a' is not the 5-digit ZIP of a post office"],
      [{ accountName: '  ' }, 'the account name is missing'],
      [{ returnAddress: [] }, 'the return address is missing'],
      [{ returnAddress: [' ', ''] }, 'the return address is missing'],
    ] as Array<[Record<string, unknown>, string | null]>) {
      expect(devRefusal({ ...ok, ...over } as typeof ok), JSON.stringify(over)).to.equal(reason);
    }
  });
});
