import { expect } from 'chai';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '@vbi/client/bin/vbi';
import { VbiClient } from '@vbi/client/client/vbi-client';
import { computePostage } from '@vbi/core/rates/postage';
import { ServerFixture, serverFixture } from '../helpers/server';

/*
 * The SDK against the real service over HTTP (modules on SoftHSM2, PostgreSQL, dev PKI): the
 * client's and the module's bytes agree end to end.
 */
describe('client SDK against the service over HTTP', function () {
  this.timeout(180_000);
  let f: ServerFixture;
  let dir: string;
  const password = 'correct horse battery staple';

  before(async () => {
    f = await serverFixture();
    dir = mkdtempSync(join(tmpdir(), 'vbi-client-e2e-'));
  });
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await f?.close();
  });

  it('registers, buys, prints in a session, and the state survives a reopen', async () => {
    const keyFilePath = join(dir, 'key.json');
    const client = await VbiClient.register({
      baseUrl: f.url, rootCertPem: f.rootPem, name: 'E2E Mail Room', licensingZip: '20260',
      returnAddress: ['E2E Mail Room', '1 Main St', 'Washington DC 20260'], password, keyFilePath,
    });
    expect(await client.balance()).to.include({ ascending: 0, descending: 0, state: 'active' });
    const bought = await client.buy({ amount: 20_000, payment: { kind: 'card', token: 'tok_approve' } });
    expect(bought.status).to.equal('approved');
    expect(client.registers).to.deep.equal({ ascending: 0, descending: 20_000 });

    await client.openSession({ heartbeats: false });
    await client.heartbeat();
    const out = await client.print([
      { destinationZip: '205000001', rate: { mailClass: 'first-class-letter', weightOz: 1 } },
      { destinationZip: '10001', postage: 1_000 },
    ]);
    expect(out.items.map((i) => [i.status, i.reason ?? null])).to.deep.equal([['printed', null], ['printed', null]]);
    const fcl = computePostage({ mailClass: 'first-class-letter', weightOz: 1 }).postage;
    expect(out.items[0].decoded!.fields).to.include({ postage: fcl, destinationZip: '205000001', meterId: client.meterId });
    expect(client.registers).to.deep.equal({ ascending: fcl + 1_000, descending: 20_000 - fcl - 1_000 });
    await client.heartbeat();
    await client.closeSession();

    const again = await VbiClient.open({ keyFilePath, password });
    expect(await again.balance()).to.include({ ascending: fcl + 1_000, descending: 20_000 - fcl - 1_000 });
    // spoilage limit: refunds up to 1% of the ascending register
    const refund = await again.refund({ kind: 'partial', amount: 10, reason: 'spoiled label' });
    expect(refund.refunded).to.equal(10);
    const verdict = await again.verify(out.items[1].indicium!);
    expect(verdict.result).to.equal('VALID');

    // the service's own gauges: the module serving, and every command of this test committed in a group
    const metrics = await (await fetch(`${f.url}/v1/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1]);
    expect(value('vbi_modules_serving')).to.equal(1);
    expect(value('vbi_commit_groups')).to.be.at.least(5); // registration, purchase, session, print, refund at least
    expect(value('vbi_committed_commands')).to.be.at.least(value('vbi_commit_groups'));
  });

  it('the vbi CLI: register, buy, print-batch with progress and labels, balance', async () => {
    let out = '';
    let err = '';
    const io = {
      stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) }, cwd: dir,
      env: { VBI_PASSWORD: password, VBI_KEY_FILE: join(dir, 'cli-key.json'), VBI_SERVER: f.url },
    };
    writeFileSync(join(dir, 'root.pem'), f.rootPem);
    expect(await runCli(['register', '--name', 'CLI Mail Room', '--zip', '20260', '--return-address', 'CLI Mail Room|1 Main St', '--root', 'root.pem'], io), err).to.equal(0);
    expect(await runCli(['buy', '5.00'], io), err).to.equal(0);
    writeFileSync(join(dir, 'list.csv'), 'to,zip,weight,postage\n"Jane Doe|1 Elm St|Springfield IL 62701",627010001,1,\n"Bob|2 Oak Ave|Austin TX 78701",78701,,1.00\n');
    out = '';
    expect(await runCli(['print-batch', 'list.csv', '--out', 'labels', '--format', 'svg'], io), err).to.equal(0);
    expect(out).to.match(/printed 2, voided 0 of 2/);
    expect(readdirSync(join(dir, 'labels')).sort()).to.deep.equal(['0001.svg', '0002.svg']);
    out = '';
    expect(await runCli(['balance'], io), err).to.equal(0);
    const fcl = computePostage({ mailClass: 'first-class-letter', weightOz: 1 }).postage;
    expect(out).to.include(`(${5_000 - fcl - 1_000} mills)`);

    // one PNG label, read back by dmtxread (an independent decoder) and verified by the service
    expect(await runCli(['print', '--to', 'Ann|3 Pine Rd|Boston MA 02108', '--zip', '02108', '--weight', '1', '--out', 'label.png'], io), err).to.equal(0);
    out = '';
    expect(await runCli(['verify', 'label.png'], io), err).to.equal(0);
    expect(out.split('\n')[0]).to.equal('VALID');
    expect(out).to.include('to ZIP: 02108');

    // a label that cannot be written is not a success: exit 1, and the paid indicium is on stderr
    err = '';
    expect(await runCli(['print', '--to', 'Ann|3 Pine Rd|Boston MA 02108', '--zip', '02108', '--weight', '1', '--out', join(dir, 'no-such-dir', 'label.png')], io)).to.equal(1);
    expect(err).to.include('could not write').and.include('indicium (base64, keep it): ').and.include('the meter was debited');
    const payload = /indicium \(base64, keep it\): (\S+)/.exec(err)?.[1] as string;
    out = '';
    expect(await runCli(['verify', '--payload', payload], io), err).to.equal(0);
    expect(out.split('\n')[0]).to.equal('VALID');
  });

  it('a check that clears later, a correction indicium, the history and a full refund, through the SDK', async () => {
    const keyFilePath = join(dir, 'key-story.json');
    const client = await VbiClient.register({
      baseUrl: f.url, rootCertPem: f.rootPem, name: 'Story Mail Room', licensingZip: '20260',
      returnAddress: ['Story Mail Room', '1 Main St'], password, keyFilePath,
    });
    const pending = await client.buy({ amount: 8_000, payment: { kind: 'check', token: 'tok_approve' } });
    expect(pending.status).to.equal('pending');
    expect(client.registers.descending).to.equal(0);
    const cleared = await client.settle(pending.paymentId);
    expect(cleared.status).to.equal('approved');
    expect(client.registers.descending).to.equal(8_000);

    await client.openSession({ heartbeats: false });
    const printed = await client.print([{ destinationZip: '205000001', postage: 500 }]);
    const original = printed.items[0].indiciumId as number;
    const corr = await client.correction({ originalIndiciumId: original, item: { destinationZip: '205000001', postage: 180 } });
    expect(corr.status).to.equal('printed');
    expect(client.registers).to.deep.equal({ ascending: 680, descending: 7_320 });
    const row = await f.service.db.knex('indicia').where({ indicium_id: corr.indiciumId }).first();
    expect(row).to.include({ kind: 'correction', corrects: original, postage: 180 });
    await client.closeSession();

    const history = await client.history(20);
    expect(history.map((h) => h.type)).to.include.members(['pvd', 'indicium', 'correction', 'session']);
    const full = await client.refund({ kind: 'full', reason: 'software uninstalled' });
    expect(full.refunded).to.equal(7_320);
    expect(await client.balance()).to.include({ descending: 0, state: 'closed' });
  });
});
