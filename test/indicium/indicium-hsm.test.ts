import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CryptoModule } from '@vbi/server/hsm/crypto-module';
import { signIndicium } from '@vbi/core/indicium/sign';
import { renderLabelPng } from '@vbi/core/indicium/render/label';
import { IndiciumVerifier } from '@vbi/core/indicium/verify';
import { decodePng } from '../helpers/decode';
import { provisionToken, startModule, uniqueLabel } from '../helpers/hsm';
import { isoDay, sampleFields } from '../helpers/indicium-fixtures';
import { opensslVerify } from '../helpers/openssl-verify';
import { createRootCa, issueIndiciumCertificate, randomSerial, TestCa } from '../helpers/throwaway-ca';

/**
 * The whole path of one indicium with the real token: key generated in SoftHSM2 and kept only
 * wrapped, certified by a throwaway CA, data signed inside the token, printed on a label,
 * read back by an independent decoder, verified offline, and cross-checked by OpenSSL.
 */
describe('indicium signed in the token (SoftHSM2), printed, read back and verified', function () {
  this.timeout(120_000);
  const label = uniqueLabel('indicium');
  let m: CryptoModule;
  let dir: string;
  let root: TestCa;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vbi-indicium-hsm-'));
    root = createRootCa(dir);
    await provisionToken(label);
    m = await startModule(label);
  });
  after(async () => {
    await m?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const algorithm of ['ec-p256', 'rsa-2048'] as const) {
    it(`${algorithm}: VALID from the label PNG, and OpenSSL verifies the token's signature`, async () => {
      const { wrappedKey, publicKeySpki } = await m.generateIndiciumKey({ algorithm });
      const serial = randomSerial();
      const cert = issueIndiciumCertificate(dir, root, { spki: publicKeySpki, serialHex: serial });
      const signed = await signIndicium({
        fields: sampleFields({ algorithm, certSerial: serial, dateOfMailing: isoDay(0) }),
        sign: (data) => m.signWithWrappedKey({ wrappedKey, algorithm, data }),
      });
      expect(signed.signature.length).to.equal(algorithm === 'ec-p256' ? 64 : 256);

      const png = await renderLabelPng({ indicium: signed.indicium, size: 'envelope-10', deliveryAddress: ['JANE DOE', '1 MAIN ST', 'NEW YORK NY 10001'] });
      const [read] = await decodePng(png);
      expect(read?.toString('hex')).to.equal(signed.indicium.toString('hex'));

      const result = await new IndiciumVerifier({ trustAnchors: [root.certPem] }).verify({ indicium: read, certificate: cert });
      expect(result.code, result.reason).to.equal('VALID');
      expect(result.fields?.certSerial).to.equal(serial);
      expect(opensslVerify(dir, cert, signed.data, signed.signature, algorithm)).to.deep.equal({ ok: true, out: 'Verified OK' });
    });
  }
});
