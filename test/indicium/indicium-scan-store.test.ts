import { expect } from 'chai';
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase, type Database } from '@vbi/server/db/database';
import { fraudReportPolicy } from '@vbi/server/indicium/fraud-report';
import { PgScanStore } from '@vbi/server/indicium/pg-scan-store';
import { signIndicium } from '@vbi/core/indicium/sign';
import { IndiciumVerifier } from '@vbi/core/indicium/verify';
import { isoDay, sampleFields } from '../helpers/indicium-fixtures';
import { createRootCa, issueIndiciumCertificate, randomSerial, TestCa } from '../helpers/throwaway-ca';

/** Order of the P-256 group: (r, n - s) is the other valid signature for (r, s). */
const P256_N = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551');

/**
 * Duplicate detection against a real PostgreSQL: an embedded cluster in a temp directory, or
 * DATABASE_URL when set (digests are random, so runs do not collide).
 */
describe('indicium duplicate detection (real PostgreSQL)', function () {
  this.timeout(120_000);
  let varDir: string;
  let db: Database;
  let store: PgScanStore;
  let root: TestCa;
  let cert: Buffer;
  let serial: string;
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const signer = async (data: Buffer): Promise<Buffer> => sign('sha256', data, { key: key.privateKey, dsaEncoding: 'ieee-p1363' });

  before(async () => {
    varDir = mkdtempSync(join(tmpdir(), 'vbi-indicium-db-'));
    db = await openDatabase({ url: process.env.DATABASE_URL || undefined, varDir });
    store = new PgScanStore(db.knex);
    root = createRootCa(varDir);
    serial = randomSerial();
    cert = issueIndiciumCertificate(varDir, root, { spki: key.publicKey.export({ type: 'spki', format: 'der' }), serialHex: serial });
  });
  after(async () => {
    await db?.close();
    rmSync(varDir, { recursive: true, force: true });
  });

  // each indicium its own piece number (a number seen on two indicia is a duplicate too: below)
  const scan = (digest: Buffer, location: string, seenAt: Date) => ({ indiciumDigest: digest, meterId: 'M-000042', sequence: digest.readUInt32BE(0), seenAt, location });

  it('the first scan is new; every later scan sees when and where the first was', async () => {
    const digest = randomBytes(32);
    const t1 = new Date('2026-01-16T08:30:00.123Z');
    expect(await store.record(scan(digest, 'NEW YORK NY P&DC', t1))).to.deep.equal({ firstSeen: null });
    for (const where of ['CHICAGO IL NDC', 'DENVER CO P&DC']) {
      expect(await store.record(scan(digest, where, new Date()))).to.deep.equal({ firstSeen: { seenAt: t1, location: 'NEW YORK NY P&DC', otherIndicium: false } });
    }
    const rows = await db.knex('indicium_scans').where({ indicium_digest: digest });
    expect(rows).to.have.length(1);
    expect(rows[0]).to.include({ meter_id: 'M-000042', first_location: 'NEW YORK NY P&DC' });
  });

  it('of 24 concurrent scans of one indicium exactly one is first, and all agree which', async () => {
    const digest = randomBytes(32);
    const results = await Promise.all(
      Array.from({ length: 24 }, (_, i) => store.record(scan(digest, `SORTER ${i}`, new Date(Date.UTC(2026, 0, 16, 9, 0, i))))),
    );
    const firsts = results.map((r, i) => [r, i] as const).filter(([r]) => r.firstSeen === null);
    expect(firsts).to.have.length(1);
    const winner = firsts[0][1];
    for (const r of results.filter((x) => x.firstSeen)) {
      expect(r.firstSeen).to.deep.equal({ seenAt: new Date(Date.UTC(2026, 0, 16, 9, 0, winner)), location: `SORTER ${winner}`, otherIndicium: false });
    }
  });

  it('the table refuses a digest that is not 32 bytes (CHECK), and so does the store', async () => {
    const err = await db.knex('indicium_scans')
      .insert({ indicium_digest: randomBytes(31), meter_id: 'M-1', sequence: 1, first_seen_at: new Date(), first_location: 'X' })
      .then(() => null, (e: Error) => e);
    expect(err?.message).to.match(/check constraint/i);
    expect(await store.record(scan(randomBytes(16), 'X', new Date())).then(() => null, (e: Error) => e)).to.be.instanceOf(Error);
  });

  describe('verifier with a scan store and the fraud report policy', () => {
    const suspended: Array<{ meterId: string; reason: string }> = [];
    let verifier: IndiciumVerifier;
    before(() => {
      verifier = new IndiciumVerifier({
        trustAnchors: [root.certPem],
        certificates: { bySerial: async (s) => (s === serial ? cert : null) },
        scanStore: store,
        onDuplicate: fraudReportPolicy({ knex: db.knex, suspendMeter: async (req) => void suspended.push(req) }),
      });
    });

    it('VALID the first time; DUPLICATE with where and when afterwards, a fraud case each time; suspended only by the policy (2 duplicates, 2 plants)', async () => {
      const meterId = `M-${randomBytes(4).toString('hex').toUpperCase()}`;
      const signed = await signIndicium({ fields: sampleFields({ certSerial: serial, meterId, sequence: 99, dateOfMailing: isoDay(0) }), sign: signer });
      const first = { seenAt: new Date('2026-01-16T08:00:00Z'), location: 'NEW YORK NY P&DC', plant: 'NEW YORK NY P&DC' };
      const r1 = await verifier.verify({ indicium: signed.indicium, scan: first });
      expect(r1.code, r1.reason).to.equal('VALID');
      expect(await db.knex('fraud_reports').where({ meter_id: meterId })).to.have.length(0);

      const again = { seenAt: new Date('2026-01-17T10:00:00Z'), location: 'BOSTON MA P&DC', plant: 'BOSTON MA P&DC' };
      const r2 = await verifier.verify({ indicium: signed.indicium, scan: again });
      expect(r2.code).to.equal('DUPLICATE');
      expect(r2.firstSeen).to.deep.equal({ ...first, otherIndicium: false });
      expect(r2.reason).to.contain('NEW YORK NY P&DC').and.to.contain('2026-01-16T08:00:00.000Z');

      const reports = await db.knex('fraud_reports').where({ meter_id: meterId });
      expect(reports).to.have.length(1);
      expect(reports[0]).to.include({ kind: 'duplicate_indicium' });
      expect(Buffer.from(reports[0].indicium_digest).equals(signed.digest)).to.equal(true);
      expect(reports[0].details).to.deep.include({
        sequence: 99,
        firstSeen: { seenAt: '2026-01-16T08:00:00.000Z', location: 'NEW YORK NY P&DC', plant: 'NEW YORK NY P&DC' },
        seenAgain: { seenAt: '2026-01-17T10:00:00.000Z', location: 'BOSTON MA P&DC', plant: 'BOSTON MA P&DC' },
      });
      // the first repeat opens a case and suspends nothing
      expect(suspended.filter((s) => s.meterId === meterId)).to.have.length(0);
      const third = await verifier.verify({ indicium: signed.indicium, scan: { location: 'CHICAGO IL P&DC', plant: 'CHICAGO IL P&DC' } });
      expect(third.code).to.equal('DUPLICATE');
      expect(await db.knex('fraud_reports').where({ meter_id: meterId })).to.have.length(2);
      expect(suspended.filter((s) => s.meterId === meterId).map((s) => s.reason)).to.deep.equal([
        `2 duplicate sightings at 3 plants within 720 h (last: ${signed.digest.toString('hex')})`,
      ]);
    });

    it('the same piece read again and again at the plant that saw it first opens cases but suspends nothing', async () => {
      const meterId = `M-${randomBytes(4).toString('hex').toUpperCase()}`;
      const signed = await signIndicium({ fields: sampleFields({ certSerial: serial, meterId, sequence: 7, dateOfMailing: isoDay(0) }), sign: signer });
      for (let i = 0; i < 5; i++) await verifier.verify({ indicium: signed.indicium, scan: { location: `sorter ${i}`, plant: 'DALLAS TX P&DC' } });
      expect(await db.knex('fraud_reports').where({ meter_id: meterId })).to.have.length(4);
      expect(suspended.filter((s) => s.meterId === meterId)).to.have.length(0);
    });

    it('two different signed indicia with the same piece number: DUPLICATE on the second, and the meter is suspended at once', async () => {
      const meterId = `M-${randomBytes(4).toString('hex').toUpperCase()}`;
      const a = await signIndicium({ fields: sampleFields({ certSerial: serial, meterId, sequence: 31, postage: 680, dateOfMailing: isoDay(0) }), sign: signer });
      const b = await signIndicium({ fields: sampleFields({ certSerial: serial, meterId, sequence: 31, postage: 50, dateOfMailing: isoDay(0) }), sign: signer });
      expect(a.digest.equals(b.digest)).to.equal(false);
      expect((await verifier.verify({ indicium: a.indicium, scan: { location: 'A', plant: 'A' } })).code).to.equal('VALID');
      const r = await verifier.verify({ indicium: b.indicium, scan: { location: 'A', plant: 'A' } });
      expect(r.code).to.equal('DUPLICATE');
      expect(r.firstSeen?.otherIndicium).to.equal(true);
      expect(r.reason).to.contain('piece number 31');
      expect((await db.knex('fraud_reports').where({ meter_id: meterId })).map((x) => x.kind)).to.deep.equal(['duplicate_piece_number']);
      expect(suspended.filter((s) => s.meterId === meterId)).to.have.length(1);
    });

    it('a copy with the malleated ECDSA signature (r, n - s) still verifies, and is still a DUPLICATE', async () => {
      const signed = await signIndicium({ fields: sampleFields({ certSerial: serial, meterId: 'M-MALLEABLE', dateOfMailing: isoDay(0) }), sign: signer });
      expect((await verifier.verify({ indicium: signed.indicium, scan: { location: 'A' } })).code).to.equal('VALID');
      const s = BigInt(`0x${signed.signature.subarray(32).toString('hex')}`);
      const flipped = Buffer.concat([signed.data, signed.signature.subarray(0, 32), Buffer.from((P256_N - s).toString(16).padStart(64, '0'), 'hex')]);
      expect(flipped.equals(signed.indicium)).to.equal(false);
      const r = await verifier.verify({ indicium: flipped, scan: { location: 'B' } });
      expect(r.code, r.reason).to.equal('DUPLICATE');
      expect(r.firstSeen?.location).to.equal('A');
    });

    it('records only authentic indicia: a forged one is BAD_SIGNATURE every time and leaves no scan row', async () => {
      const signed = await signIndicium({ fields: sampleFields({ certSerial: serial, meterId: 'M-FORGED', dateOfMailing: isoDay(0) }), sign: signer });
      const forged = Buffer.from(signed.indicium);
      forged[forged.length - 70] ^= 1; // inside the signed data
      for (let i = 0; i < 2; i++) expect((await verifier.verify({ indicium: forged, scan: { location: 'X' } })).code).to.equal('BAD_SIGNATURE');
      expect(await db.knex('indicium_scans').where({ meter_id: 'M-FORGED' })).to.have.length(0);
    });
  });
});
