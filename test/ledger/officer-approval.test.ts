import { expect } from 'chai';
import { generateKeyPairSync, sign as nodeSign } from 'node:crypto';
import * as graphene from 'graphene-pk11';
import { createIndicium } from '../helpers/ledger-commands';
import { codeOf } from '../helpers/codes';
import { LedgerFixture, MAIL, ledgerFixture, provisionModules, restore, snapshot } from '../helpers/ledger';
import { TEST_USER_PIN, testLibrary } from '../helpers/hsm';
import { approvals, approvalsFor, installTestOfficers } from '../helpers/officers';
import { findSlotByLabel } from '@vbi/server/hsm/pkcs11-library';
import { P256_PARAMS } from '@vbi/server/hsm/mechanisms';
import { APPROVER_PREFIX, approverLabel } from '@vbi/server/hsm/officer-keys';
import { Approval, statementBytes } from '@vbi/server/ledger/officer-approval';
import { reinstatementStatement } from '@vbi/server/ledger/reinstatement';

/**
 * Officer approvals bound to the module token (docs/key-ceremony.md): a reinstatement happens
 * only with approvals of exactly its statement by M of the officers the module's SO installed as
 * trusted keys, verified inside the token. Tried as the holder of the service's PIN would: no
 * approvals, too few, approvals of another statement or an earlier inhibition, a key of their own
 * installed with the user login, the approvers deleted.
 */
describe('officer approvals: M of N officers, verified by the module token', function () {
  this.timeout(120_000);
  let f: LedgerFixture;
  let meterId: string;
  let serial: string;

  /**
   * A module (its officers installed by its SO first, unless `officers` is false: an SO login
   * cannot happen while this process holds the user login) inhibited by a rollback.
   */
  async function inhibitedModule(officers = true): Promise<void> {
    const labels = await provisionModules(1);
    if (officers) await installTestOfficers(labels[0], 2);
    f = await ledgerFixture({ labels });
    ({ meterId } = await f.newMeter(1_000_000));
    await f.service.ledger.postageValueDownload({ meterId, amount: 50_000 });
    serial = f.service.engines[0].hsm.serial;
    // one committed print lost to a restored snapshot: the module inhibits itself
    await snapshot(f.db, 'oa');
    await createIndicium(f.service.ledger, { meterId, postage: 1_000, mailpiece: MAIL });
    await restore(f.db, 'oa');
    expect(await codeOf(createIndicium(f.service.ledger, { meterId, postage: 1_000, mailpiece: MAIL }))).to.equal('NO_MODULE');
  }
  afterEach(async () => {
    const done = f;
    f = undefined as unknown as LedgerFixture;
    await done?.service.close();
  });

  const engine = () => f.service.engines[0];
  const rowCheckpoint = async (): Promise<Buffer> => (await f.db.knex('modules').where({ module_serial: serial }).first()).checkpoint as Buffer;
  const reinstate = async (approvalList: Approval[], accept?: Buffer) =>
    codeOf(f.service.ledger.reinstate({ moduleSerial: serial, officer: 'Operator', acceptCheckpoint: accept ?? (await rowCheckpoint()), approvals: approvalList }));
  const stillInhibited = async (): Promise<void> => {
    expect(engine().status().state).to.equal('Inhibited');
    expect(await codeOf(createIndicium(f.service.ledger, { meterId, postage: 1_000, mailpiece: MAIL }))).to.equal('NO_MODULE');
  };

  /** A user (service PIN) session on the module token, as the holder of that PIN has. */
  function asServicePin<T>(fn: (s: graphene.Session) => T): T {
    const s = findSlotByLabel(testLibrary(), f.labels[0]).open(graphene.SessionFlag.SERIAL_SESSION | graphene.SessionFlag.RW_SESSION);
    try {
      try { s.login(TEST_USER_PIN, graphene.UserType.USER); } catch { /* already logged in (token-wide) */ }
      return fn(s);
    } finally {
      s.close();
    }
  }

  it('no approvers installed: refused, nothing changes', async () => {
    await inhibitedModule(false);
    expect(await reinstate(await approvals(reinstatementStatement(engine(), await rowCheckpoint())))).to.equal('OFFICER_APPROVAL_REQUIRED');
    await stillInhibited();
  });

  it('fewer than M approvals, the same officer twice, or approvals of another statement: refused; M approvals of this one: reinstated, the approvers on the signed record', async () => {
    await inhibitedModule();
    const accept = await rowCheckpoint();
    const [alice, bob] = await approvalsFor(engine(), accept);
    expect(await reinstate([])).to.equal('OFFICER_APPROVAL_REQUIRED');
    expect(await reinstate([alice])).to.equal('OFFICER_APPROVAL_REQUIRED');
    expect(await reinstate([alice, alice])).to.equal('OFFICER_APPROVAL_REQUIRED');
    // Bob's name on Alice's signature
    expect(await reinstate([alice, { officer: bob.officer, signature: alice.signature }])).to.equal('OFFICER_APPROVAL_REQUIRED');
    // both approved the acceptance of no checkpoint at all, or of another module's
    const ofNone = await approvals({ ...reinstatementStatement(engine(), null) });
    expect(await reinstate(ofNone)).to.equal('OFFICER_APPROVAL_REQUIRED');
    const otherModule = await approvals({ ...reinstatementStatement(engine(), accept), moduleSerial: 'ffffffffffffffff' });
    expect(await reinstate(otherModule)).to.equal('OFFICER_APPROVAL_REQUIRED');
    await stillInhibited();

    const rec = await f.service.ledger.reinstate({ moduleSerial: serial, officer: 'Operator', acceptCheckpoint: accept, approvals: [bob, alice] });
    expect(rec?.details.approvedBy).to.deep.equal(['Bob Officer', 'Alice Officer']);
    expect(engine().status().state).to.equal('Idle');
    expect(await codeOf(createIndicium(f.service.ledger, { meterId, postage: 1_000, mailpiece: MAIL }))).to.equal('OK');
  });

  it('approvals of an earlier inhibition are not accepted for a later one (replay)', async () => {
    await inhibitedModule();
    const accept = await rowCheckpoint();
    const first = await approvalsFor(engine(), accept);
    expect(await reinstate(first)).to.equal('OK');
    // the same database state rolled back to again: a new inhibition
    await snapshot(f.db, 'oa2');
    await createIndicium(f.service.ledger, { meterId, postage: 1_000, mailpiece: MAIL });
    await restore(f.db, 'oa2');
    expect(await codeOf(createIndicium(f.service.ledger, { meterId, postage: 1_000, mailpiece: MAIL }))).to.equal('NO_MODULE');
    expect(await reinstate(first)).to.equal('OFFICER_APPROVAL_REQUIRED');
    await stillInhibited();
  });

  it('the service PIN alone cannot approve: the token refuses a trusted key from the user login, and an untrusted key of its own does not count', async () => {
    await inhibitedModule();
    const mallory = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = mallory.publicKey.export({ format: 'jwk' });
    const point = Buffer.concat([Buffer.from([0x04, 0x41, 0x04]), Buffer.from(jwk.x as string, 'base64url'), Buffer.from(jwk.y as string, 'base64url')]);
    const template = (label: string, trusted: boolean): graphene.ITemplate => ({
      class: graphene.ObjectClass.PUBLIC_KEY, keyType: graphene.KeyType.EC, token: true, private: false,
      label, paramsEC: P256_PARAMS, pointEC: point, verify: true, ...(trusted ? { trusted: true } : {}),
    });
    // CKA_TRUSTED = true is the SO's alone
    expect(() => asServicePin((s) => s.create(template(approverLabel(1, 1, 'Mallory'), true)))).to.throw(/CKR_/);
    // without it the object is created, but it is not an approver
    asServicePin((s) => s.create(template(approverLabel(1, 1, 'Mallory'), false)));
    asServicePin((s) => s.create(template(approverLabel(2, 2, 'Alice Officer'), false)));
    const statement = reinstatementStatement(engine(), await rowCheckpoint());
    // the token reports only the SO's trusted keys as approvers: not Mallory, not a second "Alice"
    const seen = await engine().hsm.verifyApprovals({ statement: statementBytes(statement), approvals: [] });
    expect({ ...seen, officers: [...seen.officers].sort() }).to.deep.equal({ threshold: 2, officers: ['Alice Officer', 'Bob Officer'], valid: [] });
    // Mallory signs the statement exactly as an officer's token would (ECDSA P-256 over SHA-256)
    const signed = (officer: string): Approval => ({
      officer, signature: nodeSign('sha256', statementBytes(statement), { key: mallory.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64'),
    });
    expect(await reinstate([signed('Mallory')])).to.equal('OFFICER_APPROVAL_REQUIRED');
    expect(await reinstate([signed('Alice Officer'), signed('Bob Officer')])).to.equal('OFFICER_APPROVAL_REQUIRED');
    await stillInhibited();
    // the service PIN can delete the approvers — which only leaves nobody able to approve
    asServicePin((s) => {
      const keys = s.find({ class: graphene.ObjectClass.PUBLIC_KEY });
      for (let i = 0; i < keys.length; i++) if (String(keys.items(i).getAttribute('label')).startsWith(APPROVER_PREFIX)) keys.items(i).destroy();
    });
    expect(await reinstate(await approvalsFor(engine(), await rowCheckpoint()))).to.equal('OFFICER_APPROVAL_REQUIRED');
    await stillInhibited();
  });
});
