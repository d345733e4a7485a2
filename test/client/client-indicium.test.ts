import { expect } from 'chai';
import { createCipheriv, randomBytes } from 'node:crypto';
import { decryptIndicium } from '@vbi/client/client/client-crypto';
import { indiciumAad } from '@vbi/core/protocol/bodies';
import { checkPrintedIndicium } from '@vbi/client/client/print-item';
import { WirePrintItem } from '@vbi/client/client/wire';
import { assembleIndicium, encodeIndiciumData } from '@vbi/core/indicium/layout';
import { Receipt } from '@vbi/core/protocol/messages';
import { sampleFields } from '../helpers/indicium-fixtures';

/** What the module's encryptWithKeyChain produces: IV(12) || AES-256-GCM ciphertext || tag(16). */
function encryptLikeTheModule(key: Buffer, plaintext: Buffer, aad: Buffer): string {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(aad);
  return Buffer.concat([iv, c.update(plaintext), c.final(), c.getAuthTag()]).toString('base64');
}

describe('client: indicia encrypted to the session key', () => {
  const sessionKey = randomBytes(32);
  const fields = sampleFields({ meterId: 'M-000042', destinationZip: '205000001', dateOfMailing: '2026-03-02', ascendingRegister: 1_360, descendingRegister: 18_640 });
  const indicium = assembleIndicium(encodeIndiciumData(fields), randomBytes(64));
  const item: WirePrintItem = {
    counter: 9, clientTime: 0, destinationZip: '205000001', postage: fields.postage, itemType: 'postage', dateOfMailing: '2026-03-02', dynamicPassword: '',
  };
  const receipt = { ascendingRegister: 1_360, descendingRegister: 18_640 } as Receipt;

  it('AAD is "VBI-INDICIUM\\n" + sessionId + "\\n" + counter', () => {
    expect(indiciumAad('sess-1', 9).toString('utf8')).to.equal('VBI-INDICIUM\nsess-1\n9');
  });

  it('decrypts with the session key, session id and the item counter', () => {
    const enc = encryptLikeTheModule(sessionKey, indicium, indiciumAad('sess-1', 9));
    expect(decryptIndicium({ sessionKey, sessionId: 'sess-1', counter: 9, encryptedIndicium: enc }).equals(indicium)).to.equal(true);
  });

  it('refuses another counter, another session, another key, and any modified byte (INDICIUM_MALFORMED)', () => {
    const enc = encryptLikeTheModule(sessionKey, indicium, indiciumAad('sess-1', 9));
    const attempts = [
      { sessionKey, sessionId: 'sess-1', counter: 10, encryptedIndicium: enc },
      { sessionKey, sessionId: 'sess-2', counter: 9, encryptedIndicium: enc },
      { sessionKey: randomBytes(32), sessionId: 'sess-1', counter: 9, encryptedIndicium: enc },
      { sessionKey, sessionId: 'sess-1', counter: 9, encryptedIndicium: 'AAAA' },
    ];
    const raw = Buffer.from(enc, 'base64');
    for (const at of [0, 12, 40, raw.length - 1]) {
      const t = Buffer.from(raw);
      t[at] ^= 1;
      attempts.push({ sessionKey, sessionId: 'sess-1', counter: 9, encryptedIndicium: t.toString('base64') });
    }
    for (const a of attempts) expect(() => decryptIndicium(a)).to.throw().with.property('code', 'INDICIUM_MALFORMED');
  });

  it('the decrypted indicium must decode and match the item and the receipt', () => {
    expect(checkPrintedIndicium({ indicium, item, meterId: 'M-000042', receipt }).fields).to.deep.equal(fields);
    const mismatches: Array<[string, Parameters<typeof checkPrintedIndicium>[0]]> = [
      ['postage', { indicium, item: { ...item, postage: fields.postage + 1 }, meterId: 'M-000042', receipt }],
      ['destinationZip', { indicium, item: { ...item, destinationZip: '20500' }, meterId: 'M-000042', receipt }],
      ['meterId', { indicium, item, meterId: 'M-000043', receipt }],
      ['dateOfMailing', { indicium, item: { ...item, dateOfMailing: '2026-03-03' }, meterId: 'M-000042', receipt }],
      ['ascendingRegister', { indicium, item, meterId: 'M-000042', receipt: { ...receipt, ascendingRegister: 1 } }],
      ['descendingRegister', { indicium, item, meterId: 'M-000042', receipt: { ...receipt, descendingRegister: 1 } }],
    ];
    for (const [field, req] of mismatches) {
      expect(() => checkPrintedIndicium(req), field).to.throw().with.property('details').that.deep.equals({ field });
    }
    expect(() => checkPrintedIndicium({ indicium: indicium.subarray(1), item, meterId: 'M-000042', receipt })).to.throw().with.property('code', 'INDICIUM_MALFORMED');
  });
});
