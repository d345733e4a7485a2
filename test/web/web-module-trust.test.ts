import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkModuleCertificate } from '@vbi/client/client/module-trust';
import { HttpCaClient } from '@vbi/server/pki/ca-client';
import { certifyModuleIdentity } from '@vbi/server/pki/module-identity';
import { readCertInfo } from '@vbi/core/pki/cert-info';
import { toPem } from '@vbi/core/pki/pem';
import { checkModuleCertificateWeb } from '@vbi/client/web/crypto/web-module-trust';
import { PkiWorld, startPkiWorld } from '../pki-fixtures';

/**
 * The web app's module certificate check (pkijs on WebCrypto) against the SDK's
 * (packages/core/src/pki/path.ts and OpenSSL) on real certificates from the dev postal CA: both accept the
 * same chains and refuse the same ones with CERT_INVALID.
 */
describe('web app: module identity certificates checked as the SDK checks them', () => {
  let w: PkiWorld;
  let chain: string[];
  let root: string;
  let indiciumChain: string[];
  before(async () => {
    w = await startPkiWorld('webtrust');
    const mine = await certifyModuleIdentity({ module: w.module, ca: new HttpCaClient(w.server.url), ra: w.ra, trustRoot: w.rootDer() });
    chain = [mine.certificateDer, ...mine.chain].map((d) => toPem('CERTIFICATE', d));
    root = toPem('CERTIFICATE', w.rootDer());
    const meter = await w.metergen.createMeter({ meterId: 'M-WEBTRUST-1', maxDescendingRegister: 1000 });
    indiciumChain = [meter.certificateDer, ...meter.chain].map((d) => toPem('CERTIFICATE', d));
  });
  after(async () => {
    await w?.close();
  });

  async function both(req: { rootCertPem: string; moduleSerial: string; certificateChain: string[]; at: Date }): Promise<{ sdk: string; web: string; spki?: boolean }> {
    let sdk = 'ok';
    let sdkSpki: Buffer | undefined;
    try {
      sdkSpki = checkModuleCertificate(req).export({ type: 'spki', format: 'der' });
    } catch (e) {
      sdk = (e as { code?: string }).code ?? 'ERROR';
    }
    let web = 'ok';
    let webSpki: Buffer | undefined;
    try {
      webSpki = (await checkModuleCertificateWeb(req)).spki;
    } catch (e) {
      web = (e as { code?: string }).code ?? 'ERROR';
    }
    return { sdk, web, spki: sdkSpki && webSpki ? sdkSpki.equals(webSpki) : undefined };
  }

  it('a valid chain: both accept it and take the same identity key', async () => {
    const r = await both({ rootCertPem: root, moduleSerial: w.module.serial, certificateChain: chain, at: new Date() });
    expect(r).to.deep.equal({ sdk: 'ok', web: 'ok', spki: true });
  });

  it('refused by both with CERT_INVALID: another serial, another root, outside the validity, an indicium certificate, a missing intermediate', async () => {
    const otherRoot = join(w.dir, 'other-root.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(w.dir, 'other.key'), '-out', otherRoot, '-subj', '/CN=Another root', '-days', '2'], { stdio: 'ignore' });
    const notAfter = readCertInfo(Buffer.from(chain[0].replace(/-----[^-]+-----|\s/g, ''), 'base64')).notAfter;
    const cases: Array<[string, Partial<Parameters<typeof both>[0]>]> = [
      ['another serial', { moduleSerial: 'ffffffffffffffff' }],
      ['another root', { rootCertPem: readFileSync(otherRoot, 'utf8') }],
      ['after notAfter', { at: new Date(notAfter.getTime() + 86_400_000) }],
      ['an indicium certificate', { certificateChain: indiciumChain }],
      ['no chain', { certificateChain: [] }],
    ];
    expect(chain.length, 'the dev CA issues module certificates from an intermediate').to.be.above(1);
    cases.push(['missing intermediate', { certificateChain: [chain[0]] }]);
    for (const [name, over] of cases) {
      const r = await both({ rootCertPem: root, moduleSerial: w.module.serial, certificateChain: chain, at: new Date(), ...over });
      expect({ sdk: r.sdk, web: r.web }, name).to.deep.equal({ sdk: 'CERT_INVALID', web: 'CERT_INVALID' });
    }
  });
});
