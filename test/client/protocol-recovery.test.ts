import { expect } from 'chai';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { RecoveredRequest, VbiClient } from '@vbi/client/client/vbi-client';
import { runCli } from '@vbi/client/bin/vbi';
import { KeyFile } from '@vbi/client/client/key-file';
import { ClientState } from '@vbi/client/client/client-state';
import { buildResyncRequest, checkResyncResponse } from '@vbi/client/client/resync';
import { assembleIndicium } from '@vbi/core/indicium/layout';
import { conservation } from '@vbi/server/ledger/conservation';
import { ServerFixture, serverFixture } from '../helpers/server';

/**
 * Lost answers between the service and the SDK (docs/protocol.md 6), against the real service:
 * the request reaches the service and runs, and its answer never reaches the client. For every
 * operation the SDK recovers by itself (resync, replay under the Idempotency-Key, redelivery),
 * nothing happens twice, and the client ends in step with the module.
 */
/** The `code` of what a call threw (VbiError, NetworkError, ServiceError), or 'OK'. */
function errCode(e: unknown): string {
  return (e as { code?: string } | undefined)?.code ?? 'OK';
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
    return undefined;
  } catch (e) {
    return e;
  }
}

describe('protocol recovery: lost answers, resync, redelivery', function () {
  this.timeout(180_000);
  let f: ServerFixture;
  let dir: string;
  const password = 'correct horse battery staple';
  /** Paths whose next N answers are dropped after the service ran the request. */
  const drop = new Map<string, number>();
  const lossyFetch: typeof fetch = async (input, init) => {
    const res = await fetch(input, init);
    const path = new URL(String(input)).pathname;
    const left = drop.get(path) ?? 0;
    if (left > 0) {
      drop.set(path, left - 1);
      await res.text();
      throw new TypeError('fetch failed: the answer was lost');
    }
    return res;
  };
  const http = { attempts: 2, retryDelayMs: 1 };
  let afterItem: ((index: number) => void) | undefined;
  /** Runs right after COMMIT, before the ring append: throwing there is a ring append that did not happen. */
  let afterCommit: ((info: { meterId: string; type: string }) => void) | undefined;
  let n = 0;

  async function newClient(opts: { onRecovered?: (r: RecoveredRequest) => void } = {}): Promise<{ client: VbiClient; keyFilePath: string }> {
    const keyFilePath = join(dir, `key-${++n}.json`);
    const client = await VbiClient.register({
      baseUrl: f.url, rootCertPem: f.rootPem, name: `Recovery ${n}`, licensingZip: '20260',
      returnAddress: ['Recovery', '1 Main St'], password, keyFilePath, fetch: lossyFetch, http, ...opts,
    });
    return { client, keyFilePath };
  }

  async function meterRow(meterId: string): Promise<{ ascending: number; descending: number }> {
    const m = await f.service.db.knex('meters').where({ meter_id: meterId }).first('ascending_register', 'descending_register');
    return { ascending: Number(m.ascending_register), descending: Number(m.descending_register) };
  }

  async function storedIndicia(meterId: string): Promise<Map<number, Buffer>> {
    const rows = await f.service.db.knex('indicia').where({ meter_id: meterId }).select('indicium_id', 'data', 'signature');
    return new Map(rows.map((r) => [Number(r.indicium_id), assembleIndicium(r.data, r.signature)]));
  }

  before(async () => {
    f = await serverFixture({ mailer: { afterItem: (i) => afterItem?.(i) }, ledger: { faults: { afterCommit: (info) => afterCommit?.(info) } } });
    dir = mkdtempSync(join(tmpdir(), 'vbi-recovery-'));
  });
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await f?.close();
  });
  afterEach(() => drop.clear());

  it('a client whose challenge and registers are lost resyncs by itself; a forged or replayed resync changes nothing', async () => {
    const { client, keyFilePath } = await newClient();
    await client.buy({ amount: 5_000, payment: { kind: 'card', token: 'tok_approve' } });
    // the key file loses its challenge and register copy (restored from an old backup)
    const file = await KeyFile.open<ClientState>({ path: keyFilePath, password });
    await file.save({ ...file.state, challenge: randomBytes(16).toString('base64'), registers: { ascending: 0, descending: 0 }, lastSequence: 0 });
    const reopened = await VbiClient.open({ keyFilePath, password, fetch: lossyFetch, http });
    expect(await reopened.balance()).to.include({ ascending: 0, descending: 5_000 });
    expect(reopened.registers).to.deep.equal({ ascending: 0, descending: 5_000 });

    // the exchange itself, raw: a bad MAC is refused and changes nothing
    const before = await f.service.db.knex('meters').where({ meter_id: client.meterId }).first('record_counter', 'package');
    const hmk = Buffer.from(file.state.hmk, 'base64');
    const forged = buildResyncRequest({ meterId: client.meterId, hmk: randomBytes(32), afterSequence: 0, clientTime: Date.now() });
    const refused = await fetch(`${f.url}/v1/resync`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(forged) });
    expect(refused.status).to.equal(401);
    expect((await refused.json()).error.code).to.equal('BAD_MAC');
    const old = buildResyncRequest({ meterId: client.meterId, hmk, afterSequence: 0, clientTime: Date.now() - 10 * 60_000 });
    const stale = await fetch(`${f.url}/v1/resync`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(old) });
    expect((await stale.json()).error.code).to.equal('BAD_REQUEST');
    const after = await f.service.db.knex('meters').where({ meter_id: client.meterId }).first('record_counter', 'package');
    expect(after.record_counter).to.equal(before.record_counter);
    expect(after.package.equals(before.package)).to.equal(true);

    // a genuine answer checks out for its own request only (nonce), and lists the purchase with its signed receipt
    const req = buildResyncRequest({ meterId: client.meterId, hmk, afterSequence: 0, clientTime: Date.now() });
    const answer = await (await fetch(`${f.url}/v1/resync`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(req) })).json();
    const checked = checkResyncResponse({ response: answer, request: req, hmk, modules: file.state.modules });
    expect(checked.transactions.find((t) => t.type === 'pvd')?.receipt).to.include({ op: 'purchase', amount: 5_000 });
    const other = buildResyncRequest({ meterId: client.meterId, hmk, afterSequence: 0, clientTime: Date.now() });
    expect(errCode(thrown(() => checkResyncResponse({ response: answer, request: other, hmk, modules: file.state.modules })))).to.equal('BAD_MAC');
    expect(errCode(thrown(() => checkResyncResponse({ response: { ...answer, registers: { ascending: 0, descending: 9_999 } }, request: req, hmk, modules: file.state.modules })))).to.equal('BAD_MAC');
  });

  it('lost answers to balance, history, refund, settle, session open and close: each recovers, nothing happens twice', async () => {
    const { client } = await newClient();
    drop.set('/v1/purchases', 2); // both attempts of the HTTP layer lose their answer
    let lost: unknown;
    try {
      await client.buy({ amount: 100_000, payment: { kind: 'card', token: 'tok_approve' } });
    } catch (e) {
      lost = e;
    }
    expect(errCode(lost)).to.equal('NETWORK_ERROR');
    expect(client.state.pending?.map((p) => p.op)).to.deep.equal(['purchase']);
    drop.set('/v1/balance', 1);
    // the next call finishes the purchase first (same key: one payment), then answers
    expect(await client.balance()).to.include({ ascending: 0, descending: 100_000 });
    expect(client.state.pending ?? []).to.deep.equal([]);
    const paid = await f.service.db.knex('payments').where({ meter_id: client.meterId }).select('status');
    expect(paid.map((p) => p.status)).to.deep.equal(['applied']);

    drop.set('/v1/history', 1);
    expect((await client.history(10)).length).to.be.greaterThan(0);

    drop.set('/v1/refunds', 1);
    const refund = await client.refund({ kind: 'partial', amount: 0, reason: 'nothing' }).catch((e) => e);
    // a refusal is an answer, not a loss
    expect(errCode(refund)).to.be.a('string');

    await client.openSession({ heartbeats: false });
    const out = await client.print([{ destinationZip: '10001', postage: 10_000 }]);
    expect(out.printed).to.equal(1);
    drop.set('/v1/refunds', 1);
    const r = await client.refund({ kind: 'partial', amount: 50, reason: 'spoiled' });
    expect(r.refunded).to.equal(50);
    expect(await meterRow(client.meterId)).to.deep.equal({ ascending: 10_000, descending: 100_000 - 10_000 - 50 });
    expect((await f.service.db.knex('refunds').where({ meter_id: client.meterId })).length).to.equal(1);

    drop.set(`/v1/sessions/${client.session!.sessionId}/close`, 1);
    await client.closeSession();
    drop.set('/v1/sessions', 1);
    await client.openSession({ heartbeats: false });
    expect(client.session?.ended).to.equal(undefined);

    const check = await client.buy({ amount: 7_000, payment: { kind: 'check', token: 'tok_pending' } });
    expect(check.status).to.equal('pending');
    drop.set(`/v1/purchases/${check.paymentId}/settle`, 1);
    const settled = await client.settle(check.paymentId);
    expect(settled.status).to.equal('approved');
    expect(client.registers).to.deep.equal(await meterRow(client.meterId));
    expect(await client.balance()).to.include(await meterRow(client.meterId));
    await client.closeSession();
    expect((await conservation(f.service.db.knex)).violations).to.deep.equal([]);
  });

  it('a lost print answer: the next call gets it under the same key; the indicia are the bytes committed, debited once', async () => {
    const { client } = await newClient();
    await client.buy({ amount: 50_000, payment: { kind: 'card', token: 'tok_approve' } });
    await client.openSession({ heartbeats: false });
    drop.set('/v1/indicia', 2);
    const items = [{ destinationZip: '10001', postage: 1_000 }, { destinationZip: '20500', postage: 2_000 }];
    expect(errCode(await client.print(items).catch((e) => e))).to.equal('NETWORK_ERROR');
    const recovered = await client.recover();
    expect(recovered).to.have.length(1);
    const outcome = recovered[0].outcome!;
    expect(outcome.printed).to.equal(2);
    const stored = await storedIndicia(client.meterId);
    expect(stored.size).to.equal(2);
    for (const item of outcome.items) expect(item.indicium!.equals(stored.get(item.indiciumId!)!)).to.equal(true);
    expect(await meterRow(client.meterId)).to.deep.equal({ ascending: 3_000, descending: 47_000 });
    expect(client.registers).to.deep.equal({ ascending: 3_000, descending: 47_000 });
    // and the client goes on
    expect((await client.print([{ destinationZip: '10001', postage: 500 }])).printed).to.equal(1);
    await client.closeSession();
  });

  it('a lost correction answer: recovered under the same key, one correction indicium, debited once', async () => {
    const { client } = await newClient();
    await client.buy({ amount: 20_000, payment: { kind: 'card', token: 'tok_approve' } });
    await client.openSession({ heartbeats: false });
    const [original] = (await client.print([{ destinationZip: '10001', postage: 500 }])).items;
    drop.set('/v1/corrections', 2);
    const lost = await client.correction({ originalIndiciumId: original.indiciumId!, item: { destinationZip: '10001', postage: 120 } }).catch((e) => e);
    expect(errCode(lost)).to.equal('NETWORK_ERROR');
    const [r] = await client.recover();
    expect(r.op).to.equal('correction');
    expect(r.outcome!.items.map((i) => i.status)).to.deep.equal(['printed']);
    const rows = await f.service.db.knex('indicia').where({ meter_id: client.meterId, kind: 'correction' }).select('indicium_id', 'corrects');
    expect(rows).to.have.length(1);
    expect(Number(rows[0].corrects)).to.equal(original.indiciumId);
    expect(r.outcome!.items[0].indicium!.equals((await storedIndicia(client.meterId)).get(Number(rows[0].indicium_id))!)).to.equal(true);
    expect(await meterRow(client.meterId)).to.deep.equal({ ascending: 620, descending: 19_380 });
    expect(client.registers).to.deep.equal({ ascending: 620, descending: 19_380 });
    await client.closeSession();
  });

  it('a client that crashed with a print unanswered gets its indicia in a new session (redelivered, same bytes)', async () => {
    const { client, keyFilePath } = await newClient();
    await client.buy({ amount: 50_000, payment: { kind: 'card', token: 'tok_approve' } });
    await client.openSession({ heartbeats: false });
    drop.set('/v1/indicia', 2);
    expect(errCode(await client.print([{ destinationZip: '10001', postage: 1_500 }, { destinationZip: '10002', postage: 2_500 }]).catch((e) => e))).to.equal('NETWORK_ERROR');
    client.stopHeartbeats(); // the process is gone: its session key with it

    const recovered: RecoveredRequest[] = [];
    const restarted = await VbiClient.open({ keyFilePath, password, fetch: lossyFetch, http, onRecovered: (r) => { recovered.push(r); } });
    expect(restarted.state.pending).to.have.length(1);
    await restarted.openSession({ heartbeats: false });
    expect(recovered).to.have.length(1);
    const items = recovered[0].outcome!.items;
    expect(items.map((i) => i.status)).to.deep.equal(['printed', 'printed']);
    const stored = await storedIndicia(client.meterId);
    for (const item of items) expect(item.indicium!.equals(stored.get(item.indiciumId!)!)).to.equal(true);
    expect(restarted.state.pending).to.deep.equal([]);

    // by hand too: by batch and by sequence range, always the same bytes, never a new debit
    const bySequence = await restarted.redeliver({ fromSequence: 1, toSequence: 100 });
    expect(bySequence.map((x) => x.indiciumId).sort()).to.deep.equal([...stored.keys()].sort());
    for (const x of bySequence) expect(x.indicium.equals(stored.get(x.indiciumId)!)).to.equal(true);
    const byBatch = await restarted.redeliver({ batchId: bySequence[0].batchId! });
    expect(byBatch).to.have.length(2);
    // the resync list shows the print request as one transaction with both indicia
    const file = await KeyFile.open<ClientState>({ path: keyFilePath, password });
    const hmk = Buffer.from(file.state.hmk, 'base64');
    const req = buildResyncRequest({ meterId: client.meterId, hmk, afterSequence: 0, clientTime: Date.now() });
    const answer = checkResyncResponse({
      response: await (await fetch(`${f.url}/v1/resync`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(req) })).json(),
      request: req, hmk, modules: file.state.modules,
    });
    const printRecord = answer.transactions.find((t) => t.type === 'indicium');
    expect(printRecord?.amount).to.equal(4_000);
    expect(printRecord?.indicia?.map((x) => [x.indiciumId, x.batchId, x.index])).to.deep.equal(
      [...byBatch].sort((a, b) => a.index! - b.index!).map((x) => [x.indiciumId, x.batchId, x.index]));
    expect(await meterRow(client.meterId)).to.deep.equal({ ascending: 4_000, descending: 46_000 });
    expect(restarted.registers).to.deep.equal({ ascending: 4_000, descending: 46_000 });
    await restarted.closeSession();
  });

  it('vbi recover writes the labels of a print whose answer was lost; vbi reprint fetches committed indicia again', async () => {
    const { client, keyFilePath } = await newClient();
    await client.buy({ amount: 20_000, payment: { kind: 'card', token: 'tok_approve' } });
    await client.openSession({ heartbeats: false });
    drop.set('/v1/indicia', 2);
    expect(errCode(await client.print([{ destinationZip: '10001', postage: 700 }, { destinationZip: '10002', postage: 800 }]).catch((e) => e))).to.equal('NETWORK_ERROR');
    client.stopHeartbeats(); // the program that printed is gone
    let out = '';
    let err = '';
    const io = {
      stdout: { write: (x: string) => (out += x) }, stderr: { write: (x: string) => (err += x) }, cwd: dir, fetch: lossyFetch,
      env: { VBI_PASSWORD: password, VBI_KEY_FILE: keyFilePath, VBI_SERVER: f.url },
    };
    expect(await runCli(['recover', '--out', 'recovered', '--format', 'svg'], io), err).to.equal(0);
    expect(out).to.match(/print \S+: printed 2, voided 0, failed 0/);
    const meterLabels = (d: string) => readdirSync(join(dir, d)).filter((x) => x.startsWith(client.meterId)).sort();
    expect(meterLabels('recovered')).to.have.length(2);
    out = '';
    expect(await runCli(['recover', '--out', 'recovered'], io), err).to.equal(0);
    expect(out).to.include('nothing was pending');
    const [row] = await f.service.db.knex('indicia').where({ meter_id: client.meterId }).orderBy('sequence').select('sequence', 'batch_id');
    expect(await runCli(['reprint', '--from', String(row.sequence), '--to', String(row.sequence + 5), '--out', 'again', '--format', 'svg'], io), err).to.equal(0);
    expect(meterLabels('again')).to.deep.equal(meterLabels('recovered'));
    out = '';
    expect(await runCli(['reprint', '--batch', row.batch_id, '--out', 'again', '--format', 'svg'], io), err).to.equal(0);
    expect(out.match(/exists, kept/g)).to.have.length(2);
    expect(await runCli(['reprint', '--batch', 'ffffffffffffffff', '--out', 'none'], io)).to.equal(1);
    expect(await runCli(['reprint', '--out', 'none'], io)).to.equal(2);
    expect(await meterRow(client.meterId)).to.deep.equal({ ascending: 1_500, descending: 18_500 });
  });

  it('a print request that fails in the middle of its dispatch (a 5xx) commits nothing; its retry under the same key prints every item once', async () => {
    const { client } = await newClient();
    await client.buy({ amount: 50_000, payment: { kind: 'card', token: 'tok_approve' } });
    await client.openSession({ heartbeats: false });
    // the service fails right after item 0 was signed (a database or module failure)
    afterItem = (i) => {
      if (i === 0) {
        afterItem = undefined;
        throw new Error('injected failure after the first item');
      }
    };
    const failed = await client.print([1, 2, 3].map((i) => ({ destinationZip: '10001', postage: 100 * i }))).catch((e) => e);
    expect(errCode(failed)).to.equal('INTERNAL');
    expect(client.state.pending).to.have.length(1);
    // one dispatch, one transaction: nothing of the request committed, nothing debited
    expect(await f.service.db.knex('indicia').where({ meter_id: client.meterId })).to.deep.equal([]);
    expect(await meterRow(client.meterId)).to.deep.equal({ ascending: 0, descending: 50_000 });
    expect(await f.service.db.knex('idempotency_keys').where({ scope: client.meterId, state: 'in_progress' }).select('owner')).to.deep.equal([{ owner: null }]);

    const [r] = await client.recover();
    expect(r.outcome!.items.map((i) => i.status)).to.deep.equal(['printed', 'printed', 'printed']);
    const stored = await storedIndicia(client.meterId);
    expect(stored.size).to.equal(3);
    for (const item of r.outcome!.items) expect(item.indicium!.equals(stored.get(item.indiciumId!)!)).to.equal(true);
    expect(await meterRow(client.meterId)).to.deep.equal({ ascending: 600, descending: 49_400 });
    expect(client.registers).to.deep.equal({ ascending: 600, descending: 49_400 });
    expect(await f.service.db.knex('idempotency_keys').where({ scope: client.meterId, state: 'in_progress' })).to.deep.equal([]);
    await client.closeSession();
  });

  it('a committed request whose ring append failed is answered again only after its record is rolled forward into the ring', async () => {
    const { client } = await newClient();
    await client.buy({ amount: 30_000, payment: { kind: 'card', token: 'tok_approve' } });
    await client.openSession({ heartbeats: false });
    const engine = f.service.engines[0];
    afterCommit = () => {
      afterCommit = undefined;
      throw new Error('injected: the ring append did not happen');
    };
    const failed = await client.print([{ destinationZip: '10001', postage: 1_100 }]).catch((e) => e);
    expect(errCode(failed)).to.equal('INTERNAL');
    // committed, but not in the ring: nothing was released
    const [row] = await f.service.db.knex('indicia').where({ meter_id: client.meterId }).select('checkpoint_seq', 'module_serial');
    expect(row.module_serial).to.equal(engine.hsm.serial);
    expect(engine.status().ring.newestSeq).to.be.below(Number(row.checkpoint_seq));

    // the retry resumes from the database: the record is rolled forward first, then answered
    const [r] = await client.recover();
    expect(r.outcome!.items.map((i) => i.status)).to.deep.equal(['printed']);
    expect(engine.status().ring.newestSeq).to.be.at.least(Number(row.checkpoint_seq));
    const rolled = await f.service.db.knex('audit_log').where({ module_serial: engine.hsm.serial }).select('kind');
    expect(rolled.map((a) => a.kind)).to.include('checkpoint-rolled-forward');
    expect(client.registers).to.deep.equal(await meterRow(client.meterId));
    await client.closeSession();
  });
});
