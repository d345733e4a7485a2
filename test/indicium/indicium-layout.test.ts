import { expect } from 'chai';
import { isVbiError } from '@vbi/core/errors';
import { IndiciumFields, MAX_POSTAGE_MILLS, MAX_REGISTER_MILLS, MAX_SEQUENCE } from '@vbi/core/indicium/fields';
import { assembleIndicium, decodeIndicium, encodeIndiciumData, FIXED_DATA_BYTES } from '@vbi/core/indicium/layout';
import { canonicalSerialHex } from '@vbi/core/indicium/serial';
import { signIndicium } from '@vbi/core/indicium/sign';
import { indiciumDigest } from '@vbi/core/indicium/digest';
import { sampleFields } from '../helpers/indicium-fixtures';

const SIG = { 'ec-p256': 64, 'rsa-2048': 256 } as const;
const fakeSignature = (f: IndiciumFields): Buffer => Buffer.alloc(SIG[f.algorithm], 0xa5);
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function expectError(fn: () => unknown, code: string, field?: string): void {
  try {
    fn();
  } catch (e) {
    expect(isVbiError(e), String(e)).to.equal(true);
    expect((e as { code: string }).code).to.equal(code);
    if (field) expect((e as { details: { field: string } }).details.field).to.equal(field);
    return;
  }
  expect.fail(`expected ${code}`);
}

describe('indicium layout v1', () => {
  it('encodes the sample byte for byte (the persisted format)', () => {
    // Written out by hand from docs/indicium.md; an innocent edit of layout.ts breaks this.
    const expected = hex(`
      01 01 01 08 0a1b2c3d4e5f6071 08 4d2d303030303432
      5061bc000000 b068de3a0000 a8020000
      20260115 20260f 10001123412f
      46434c20 564249303120 d2040000 07 03`);
    const data = encodeIndiciumData(sampleFields());
    expect(data.toString('hex')).to.equal(expected.toString('hex'));
    expect(data.length).to.equal(FIXED_DATA_BYTES + 8 + 8);
    expect(assembleIndicium(data, fakeSignature(sampleFields())).length).to.equal(66 + 64);
  });

  const roundTrips: Array<[string, IndiciumFields, number]> = [
    ['typical EC postage', sampleFields(), 130],
    ['smallest EC postage', sampleFields({ certSerial: '01', meterId: 'M', ascendingRegister: 0, descendingRegister: 0, postage: 0, sequence: 0, destinationZip: '00000', originZip: '00000', rateCategory: 'A', softwareId: 'X', rateTableId: 0, rateTableVersion: 0 }), 50 + 1 + 1 + 64],
    ['largest EC postage', sampleFields({ certSerial: 'ff'.repeat(20), meterId: 'Z'.repeat(32), ascendingRegister: MAX_REGISTER_MILLS, descendingRegister: MAX_REGISTER_MILLS, postage: MAX_POSTAGE_MILLS, sequence: MAX_SEQUENCE, destinationZip: '99999999999', originZip: '99999', rateCategory: 'ZZZZ', softwareId: 'Z9.-Z9', rateTableId: 255, rateTableVersion: 255, dateOfMailing: '2099-12-31' }), 50 + 20 + 32 + 64],
    ['16-byte serial, ZIP+4', sampleFields({ certSerial: '7f'.repeat(16), destinationZip: '941051234' }), 50 + 16 + 8 + 64],
    ['RSA-2048 ticket without destination', sampleFields({ algorithm: 'rsa-2048', itemType: 'ticket', destinationZip: '' }), 50 + 8 + 8 + 256],
    ['coupon, 5-digit ZIP, leap day', sampleFields({ itemType: 'coupon', destinationZip: '02134', dateOfMailing: '2028-02-29' }), 130],
    ['voucher', sampleFields({ itemType: 'voucher', destinationZip: '', dateOfMailing: '2000-01-01' }), 130],
  ];
  for (const [name, fields, total] of roundTrips) {
    it(`round-trips: ${name} (${total} bytes)`, () => {
      const data = encodeIndiciumData(fields);
      const signature = fakeSignature(fields);
      const indicium = assembleIndicium(data, signature);
      expect(indicium.length).to.equal(total);
      const decoded = decodeIndicium(indicium);
      expect(decoded.version).to.equal(1);
      expect(decoded.fields).to.deep.equal(fields);
      expect(decoded.data.equals(data)).to.equal(true);
      expect(decoded.signature.equals(signature)).to.equal(true);
      expect(encodeIndiciumData(decoded.fields).equals(data)).to.equal(true);
    });
  }

  const badFields: Array<[keyof IndiciumFields, unknown]> = [
    ['algorithm', 'dsa-1024'],
    ['itemType', 'stamp'],
    ['certSerial', ''],
    ['certSerial', '00ab'],
    ['certSerial', 'ABCD'],
    ['certSerial', 'abc'],
    ['certSerial', 'ab'.repeat(21)],
    ['meterId', ''],
    ['meterId', 'm-lower'],
    ['meterId', 'X'.repeat(33)],
    ['meterId', '-LEADING'],
    ['ascendingRegister', -1],
    ['ascendingRegister', MAX_REGISTER_MILLS + 1],
    ['descendingRegister', 1.5],
    ['postage', MAX_POSTAGE_MILLS + 1],
    ['postage', Number.NaN],
    ['sequence', MAX_SEQUENCE + 1],
    ['rateTableId', 256],
    ['rateTableVersion', -1],
    ['dateOfMailing', '2026-02-30'],
    ['dateOfMailing', '20260115'],
    ['dateOfMailing', '1999-12-31'],
    ['dateOfMailing', '2100-01-01'],
    ['originZip', '2026'],
    ['originZip', '2026A'],
    ['destinationZip', '1234567'],
    ['destinationZip', ''],
    ['rateCategory', ''],
    ['rateCategory', 'fcl'],
    ['rateCategory', 'FCLXX'],
    ['rateCategory', 'F L'],
    ['softwareId', 'TOOLONG'],
    ['softwareId', '.VBI'],
  ];
  for (const [field, value] of badFields) {
    it(`refuses to encode ${field} = ${JSON.stringify(value)}`, () => {
      expectError(() => encodeIndiciumData(sampleFields({ [field]: value } as Partial<IndiciumFields>)), 'INDICIUM_FIELD_INVALID', field);
    });
  }

  // Offsets in the sample: serial at 4..11, meter ID length at 12, tail t = 21.
  const good = (): Buffer => assembleIndicium(encodeIndiciumData(sampleFields()), fakeSignature(sampleFields()));
  const t = 21;
  const malformed: Array<[string, (b: Buffer) => Buffer, string]> = [
    ['empty', () => Buffer.alloc(0), 'length'],
    ['version 0', (b) => set(b, 0, 0), 'version'],
    ['version 2', (b) => set(b, 0, 2), 'version'],
    ['algorithm ID 0', (b) => set(b, 1, 0), 'algorithm'],
    ['algorithm ID 3', (b) => set(b, 1, 3), 'algorithm'],
    ['algorithm ID RSA with an EC-sized signature', (b) => set(b, 1, 2), 'length'],
    ['item type 0', (b) => set(b, 2, 0), 'itemType'],
    ['item type 5', (b) => set(b, 2, 5), 'itemType'],
    ['serial length 0', (b) => set(b, 3, 0), 'certSerial'],
    ['serial length 21', (b) => set(b, 3, 21), 'certSerial'],
    ['serial length off by one (the meter ID length lands on text)', (b) => set(b, 3, 9), 'meterId'],
    ['serial with a leading zero byte', (b) => set(b, 4, 0), 'certSerial'],
    ['meter ID length 0', (b) => set(b, 12, 0), 'meterId'],
    ['meter ID length 33', (b) => set(b, 12, 33), 'meterId'],
    ['meter ID in lower case', (b) => set(b, 13, 0x6d), 'meterId'],
    ['meter ID with a non-ASCII byte', (b) => set(b, 14, 0xad), 'meterId'],
    ['one byte short', (b) => b.subarray(0, b.length - 1), 'length'],
    ['one byte trailing', (b) => Buffer.concat([b, Buffer.from([0])]), 'length'],
    ['signature missing', (b) => b.subarray(0, 66), 'length'],
    ['date nibble 0xA', (b) => set(b, t + 16, 0x2a), 'dateOfMailing'],
    ['date 2026-02-30', (b) => set(set(b, t + 18, 0x02), t + 19, 0x30), 'dateOfMailing'],
    ['date month 13', (b) => set(b, t + 18, 0x13), 'dateOfMailing'],
    ['date with filler', (b) => set(b, t + 19, 0x1f), 'dateOfMailing'],
    ['origin ZIP filler digit', (b) => set(b, t + 22, 0x00), 'originZip'],
    ['origin ZIP with filler in the middle', (b) => set(b, t + 21, 0xf6), 'originZip'],
    ['destination with 7 digits', (b) => set(set(set(b, t + 26, 0x2f), t + 27, 0xff), t + 28, 0xff), 'destinationZip'],
    ['destination digit after filler', (b) => set(b, t + 25, 0xf3), 'destinationZip'],
    ['postage without destination', (b) => b.fill(0xff, t + 23, t + 29), 'destinationZip'],
    ['rate category in lower case', (b) => set(b, t + 29, 0x66), 'rateCategory'],
    ['rate category with an inner space', (b) => set(b, t + 30, 0x20), 'rateCategory'],
    ['rate category all spaces', (b) => b.fill(0x20, t + 29, t + 33), 'rateCategory'],
    ['software ID with a control byte', (b) => set(b, t + 38, 0x00), 'softwareId'],
  ];
  for (const [name, mutate, field] of malformed) {
    it(`rejects ${name} (INDICIUM_MALFORMED, ${field})`, () => {
      expectError(() => decodeIndicium(mutate(good())), 'INDICIUM_MALFORMED', field);
    });
  }

  it('assembleIndicium refuses a signature of the wrong length', () => {
    const data = encodeIndiciumData(sampleFields());
    expectError(() => assembleIndicium(data, Buffer.alloc(63)), 'INDICIUM_MALFORMED', 'length');
    expectError(() => assembleIndicium(data, Buffer.alloc(256)), 'INDICIUM_MALFORMED', 'length');
  });

  it('signIndicium signs exactly the encoded bytes and digests the data only', async () => {
    let signed: Buffer | undefined;
    const out = await signIndicium({ fields: sampleFields(), sign: async (d) => ((signed = d), Buffer.alloc(64, 7)) });
    expect(signed!.equals(encodeIndiciumData(sampleFields()))).to.equal(true);
    expect(out.indicium.equals(Buffer.concat([signed!, Buffer.alloc(64, 7)]))).to.equal(true);
    expect(out.digest.equals(indiciumDigest(signed!))).to.equal(true);
  });

  it('signIndicium signs nothing when a field is invalid', async () => {
    let calls = 0;
    const err = await signIndicium({ fields: sampleFields({ postage: -5 }), sign: async () => (calls++, Buffer.alloc(64)) }).catch((e) => e);
    expect(err).to.include({ code: 'INDICIUM_FIELD_INVALID' });
    expect(calls).to.equal(0);
  });

  const serials: Array<[string, string]> = [['A1B2C3', 'a1b2c3'], ['00a1', 'a1'], ['abc', '0abc'], ['0000', '00'], ['80FF', '80ff']];
  for (const [input, canonical] of serials) {
    it(`canonicalSerialHex('${input}') = '${canonical}'`, () => expect(canonicalSerialHex(input)).to.equal(canonical));
  }
});

function set(b: Buffer, offset: number, value: number): Buffer {
  const c = Buffer.from(b);
  c[offset] = value;
  return c;
}
