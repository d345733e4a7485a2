import { expect } from 'chai';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addCredential } from '@vbi/server/api/credentials';
import { VbiClient } from '@vbi/client/client/vbi-client';
import { PrintedItem } from '@vbi/client/client/print-results';
import { decodeIndicium } from '@vbi/core/indicium/layout';
import { verifyIndiciumSignature } from '@vbi/core/indicium/signature';
import { planIndicium, signPlanned } from '@vbi/server/module/commands/create-indicium';
import { openPackage, sealPackage } from '@vbi/server/module/package-seal';
import { PUBLIC_TAGS } from '@vbi/core/psd/psd-package';
import { decodeTlv } from '@vbi/core/psd/tlv';
import { MAIL } from '../helpers/ledger';
import { publicSectionOf, sealWithoutPieceCounter } from '../helpers/legacy-package';
import { ServerFixture, serverFixture } from '../helpers/server';

/*
 * The piece counter (docs/psd-package.md tag 14, docs/indicium.md): a meter's indicia are
 * numbered 1, 2, 3, ... whatever else the meter does between them, against the real service
 * (SoftHSM2 module, PostgreSQL, SDK over HTTP); the record counter goes on counting every
 * record for receipts, the journal and resync. A package sealed before tag 14 counts on from
 * its record counter.
 */
describe('piece counter: indicia numbered by printed pieces', function () {
  this.timeout(180_000);
  let f: ServerFixture;
  let dir: string;
  const password = 'piece by piece, number by number';

  before(async () => {
    f = await serverFixture();
    dir = mkdtempSync(join(tmpdir(), 'vbi-piece-'));
  });
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await f?.close();
  });

  it('purchases, sessions and an inquiry between prints: single prints, a batch and a correction carry 1..6; the record counter went further', async () => {
    const knex = f.service.db.knex;
    const hsm = f.service.engines[0].hsm;
    const client = await VbiClient.register({
      baseUrl: f.url, rootCertPem: f.rootPem, name: 'Piece Mail Room', licensingZip: '20260',
      returnAddress: ['Piece Mail Room', '1 Main St'], password, keyFilePath: join(dir, 'key.json'),
    });
    const meterId = client.meterId;
    expect((await client.buy({ amount: 50_000, payment: { kind: 'card', token: 'tok_approve' } })).status).to.equal('approved');
    await client.openSession({ heartbeats: false });
    const one = await client.print([{ destinationZip: '205000001', postage: 500 }]);
    const two = await client.print([{ destinationZip: '10001', postage: 600 }]);
    await client.closeSession();
    expect(await client.balance()).to.include({ ascending: 1_100, descending: 48_900 }); // an inquiry
    expect((await client.buy({ amount: 10_000, payment: { kind: 'card', token: 'tok_approve' } })).status).to.equal('approved');
    await client.openSession({ heartbeats: false });
    const batch = await client.print([
      { destinationZip: '205000001', postage: 100 }, { destinationZip: '10001', postage: 200 }, { destinationZip: '02108', postage: 300 },
    ]);
    const corr = await client.correction({ originalIndiciumId: one.items[0].indiciumId as number, item: { destinationZip: '205000001', postage: 50 } });

    const pieces: PrintedItem[] = [...one.items, ...two.items, ...batch.items, corr];
    expect(pieces.map((p) => p.status)).to.deep.equal(Array(6).fill('printed'));
    // the number each indicium carries (signed; the label's "NO.") counts printed pieces only
    expect(pieces.map((p) => p.decoded!.fields.sequence)).to.deep.equal([1, 2, 3, 4, 5, 6]);
    const rows = await knex('indicia').where({ meter_id: meterId }).orderBy('indicium_id').select('sequence', 'kind', 'indicium_id');
    expect(rows.map((r) => [Number(r.sequence), r.kind])).to.deep.equal([
      [1, 'postage'], [2, 'postage'], [3, 'postage'], [4, 'postage'], [5, 'postage'], [6, 'correction'],
    ]);

    // receipts keep the record counter: registration, purchases, sessions and the inquiry moved it too
    const receiptSeqs = pieces.map((p) => p.receipt!.sequence);
    for (let i = 1; i < receiptSeqs.length; i++) expect(receiptSeqs[i], `receipt ${i}`).to.be.greaterThan(receiptSeqs[i - 1]);
    expect(receiptSeqs[0]).to.be.greaterThan(1);
    expect(receiptSeqs.slice(2, 5)).to.deep.equal([receiptSeqs[2], receiptSeqs[2] + 1, receiptSeqs[2] + 2]); // a batch's items: consecutive records
    const meter = await knex('meters').where({ meter_id: meterId }).first('package', 'record_counter');
    const pkg = await openPackage(hsm, meter.package, meterId);
    expect(pkg.pieceCounter).to.equal(6);
    expect(pkg.recordCounter).to.equal(Number(meter.record_counter));
    expect(pkg.recordCounter).to.be.greaterThan(receiptSeqs[5]);
    // the journal (resync list) counts records: rising, the newest is the package's record counter
    const journal = (await knex('journal').where({ meter_id: meterId }).orderBy('journal_id').select('sequence')).map((r) => Number(r.sequence));
    for (let i = 1; i < journal.length; i++) expect(journal[i], `journal row ${i}`).to.be.greaterThan(journal[i - 1]);
    expect(journal.at(-1)).to.equal(pkg.recordCounter);

    // reprint by piece number: the batch's three, the same bytes
    const again = await client.redeliver({ fromSequence: 3, toSequence: 5 });
    expect(again.map((x) => [x.sequence, x.decoded.fields.sequence])).to.deep.equal([[3, 3], [4, 4], [5, 5]]);
    expect(again.map((x, i) => x.indicium.equals(batch.items[i].indicium!))).to.deep.equal([true, true, true]);
    await client.closeSession();

    // the post's duplicate detection (meter, piece number): six pieces, six first sightings; a piece seen again is a duplicate
    const plant = await addCredential(knex, 'verifier', 'piece plant');
    for (const [i, p] of pieces.entries()) {
      const r = await fetch(`${f.url}/v1/verify`, {
        method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${plant.token}` },
        body: JSON.stringify({ indicium: p.indicium!.toString('base64'), location: `sorter ${i}` }),
      }).then((x) => x.json() as Promise<{ result: string; recorded: boolean }>);
      expect([r.result, r.recorded], `piece ${i + 1}`).to.deep.equal(['VALID', true]);
    }
    const seen = await fetch(`${f.url}/v1/verify`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${plant.token}` },
      body: JSON.stringify({ indicium: pieces[3].indicium!.toString('base64'), location: 'sorter 9' }),
    }).then((x) => x.json() as Promise<{ result: string; firstSeen?: { location: string; otherIndicium: boolean } }>);
    expect([seen.result, seen.firstSeen?.location, seen.firstSeen?.otherIndicium]).to.deep.equal(['DUPLICATE', 'sorter 3', false]);
    const scans = await knex('indicium_scans').where({ meter_id: meterId }).orderBy('sequence').select('sequence');
    expect(scans.map((s) => Number(s.sequence))).to.deep.equal([1, 2, 3, 4, 5, 6]);
    await client.close();
  });

  it('a package sealed before the piece counter (no tag 14) counts on from its record counter: the next piece is record counter + 1', async () => {
    const knex = f.service.db.knex;
    const hsm = f.service.engines[0].hsm;
    const client = await VbiClient.register({
      baseUrl: f.url, rootCertPem: f.rootPem, name: 'Old Mail Room', licensingZip: '20260',
      returnAddress: ['Old Mail Room', '1 Main St'], password, keyFilePath: join(dir, 'old-key.json'),
    });
    const meterId = client.meterId;
    await client.buy({ amount: 20_000, payment: { kind: 'card', token: 'tok_approve' } });
    await client.openSession({ heartbeats: false });
    await client.print([{ destinationZip: '205000001', postage: 500 }, { destinationZip: '10001', postage: 500 }]);
    await client.closeSession();
    await client.close();

    // the meter's package as an old release sealed it: the same fields, no tag 14
    const meter = await knex('meters').where({ meter_id: meterId }).first('package');
    const current = await openPackage(hsm, meter.package, meterId);
    expect(current.pieceCounter).to.equal(2);
    expect(current.recordCounter).to.be.greaterThan(4);
    const old = await sealWithoutPieceCounter(hsm, current);
    expect(decodeTlv(publicSectionOf(old), [], Object.values(PUBLIC_TAGS)).has(PUBLIC_TAGS.pieceCounter)).to.equal(false);
    const opened = await openPackage(hsm, old, meterId);
    // that release had no licence tags either: grandfathered as licensed, without a licence number
    expect(opened).to.deep.equal({ ...current, pieceCounter: current.recordCounter, licenceId: '' });

    // the next indicium of that package, planned and signed in the module with the meter's own key
    const now = Date.now();
    const plan = planIndicium(opened, { postage: 300, mailpiece: MAIL }, now);
    expect([plan.sequence, plan.fields.sequence, plan.next.pieceCounter]).to.deep.equal(Array(3).fill(current.recordCounter + 1));
    expect(plan.recordSequence).to.equal(current.recordCounter + 1);
    expect(plan.next.recordCounter).to.equal(current.recordCounter); // the engine moves it when it seals
    const signed = await signPlanned(plan, opened.secrets.wrappedIndiciumKey, hsm);
    const decoded = decodeIndicium(signed.indicium);
    expect(decoded.fields).to.include({ meterId, sequence: current.recordCounter + 1, postage: 300, ascendingRegister: 1_300, descendingRegister: 18_700 });
    const cert = await knex('certificates').where({ meter_id: meterId, serial_hex: decoded.fields.certSerial }).first('certificate_der');
    const publicKey = new X509Certificate(cert.certificate_der).publicKey;
    expect(verifyIndiciumSignature({ algorithm: decoded.fields.algorithm, publicKey, data: decoded.data, signature: decoded.signature })).to.equal(true);
    // every number the meter printed before is below it: no piece number is printed twice
    const printed = (await knex('indicia').where({ meter_id: meterId }).select('sequence')).map((r) => Number(r.sequence));
    expect(Math.max(...printed)).to.be.lessThan(plan.sequence);

    // sealed again (this release), the package carries tag 14 and goes on from there
    const resealed = await sealPackage(hsm, plan.next);
    expect(decodeTlv(publicSectionOf(resealed), [], Object.values(PUBLIC_TAGS)).has(PUBLIC_TAGS.pieceCounter)).to.equal(true);
    const reopened = await openPackage(hsm, resealed, meterId);
    expect(planIndicium(reopened, { postage: 1, mailpiece: MAIL }, now).sequence).to.equal(current.recordCounter + 2);
  });
});
