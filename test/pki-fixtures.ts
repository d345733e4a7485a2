import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TokenSigner } from '@vbi/server/hsm/token-signer';
import { CryptoModule } from '@vbi/server/hsm/crypto-module';
import { PsdEngine } from '@vbi/server/module/psd-engine';
import { initCa, createVendorRaKey, registerRa, CaSummary } from '@vbi/server/pki/ca/ca-ceremony';
import { PostalCa } from '@vbi/server/pki/ca/postal-ca';
import { RunningCa, startCaServer } from '@vbi/server/pki/ca/http-server';
import { CaDirectory, IssuedRecord } from '@vbi/server/pki/ca/ca-directory';
import { HttpCaClient } from '@vbi/server/pki/ca-client';
import { TrustStore } from '@vbi/server/pki/trust-store';
import { VendorRa } from '@vbi/server/pki/vendor-ra';
import { MemoryCertificateStore } from '@vbi/server/pki/certificate-store';
import { MemoryMeterStore } from './helpers/memory-meter-store';
import { MeterGen, MeterGenOptions } from '@vbi/server/pki/metergen';
import { PemLabel, toPem } from '@vbi/core/pki/pem';
import { TEST_SO_PIN, TEST_USER_PIN, provisionToken, startEngine, testLibrary, uniqueLabel } from './helpers/hsm';

const run = promisify(execFile);

/** Everything a MeterGen test needs: module, CA token + HTTP CA, vendor token + RA, stores. */
export interface PkiWorld {
  dir: string;
  caDir: string;
  caLabel: string;
  vendorLabel: string;
  module: CryptoModule;
  engine: PsdEngine;
  caSigner: TokenSigner;
  vendorSigner: TokenSigner;
  ca: PostalCa;
  server: RunningCa;
  caInit: CaSummary;
  ra: VendorRa;
  trust: TrustStore;
  certificates: MemoryCertificateStore;
  store: MemoryMeterStore;
  metergen: MeterGen;
  /** A MeterGen over the same store and trust, with some options replaced. */
  metergenWith(over: Partial<MeterGenOptions>): MeterGen;
  rootDer(): Buffer;
  /** The CA's index of issued certificates. */
  caIssued(): IssuedRecord[];
  close(): Promise<void>;
}

export const RA_KEY_ID = 'vendor-1';

/** Provisions three tokens (module, CA, vendor), creates the CA, registers the RA, starts the HTTP CA on 127.0.0.1:0. */
export async function startPkiWorld(prefix: string): Promise<PkiWorld> {
  const dir = mkdtempSync(join(process.env.VBI_TEST_ROOT as string, `${prefix}-`));
  const caDir = join(dir, 'ca');
  const moduleLabel = uniqueLabel(`${prefix}-mod`);
  const caLabel = uniqueLabel(`${prefix}-ca`);
  const vendorLabel = uniqueLabel(`${prefix}-ven`);
  await provisionToken(moduleLabel);
  await provisionToken(caLabel, 'aes', false);
  await provisionToken(vendorLabel, 'aes', false);
  const tokens = { library: testLibrary(), soPin: TEST_SO_PIN, userPin: TEST_USER_PIN };
  const caInit = await initCa({ ...tokens, tokenLabel: caLabel, dir: caDir });
  const raKey = await createVendorRaKey({ ...tokens, tokenLabel: vendorLabel });
  registerRa({ dir: caDir, raKeyId: RA_KEY_ID, publicKeySpki: raKey.publicKeySpki });

  const { module, engine } = await startEngine(moduleLabel);
  const caSigner = await TokenSigner.open({ library: testLibrary(), tokenLabel: caLabel, userPin: TEST_USER_PIN });
  const vendorSigner = await TokenSigner.open({ library: testLibrary(), tokenLabel: vendorLabel, userPin: TEST_USER_PIN });
  const ca = await PostalCa.open({ dir: caDir, signer: caSigner });
  const server = await startCaServer({ ca, host: '127.0.0.1', port: 0 });
  const ra = new VendorRa(vendorSigner, RA_KEY_ID);
  const trust = new TrustStore(new CaDirectory(caDir).readCertificate('root.pem'));
  const certificates = new MemoryCertificateStore();
  const store = new MemoryMeterStore(engine, certificates);
  const base: MeterGenOptions = { store, ca: new HttpCaClient(server.url), ra, trust, organization: 'VBI Test Vendor' };
  return {
    dir, caDir, caLabel, vendorLabel, module, engine, caSigner, vendorSigner, ca, server, caInit, ra, trust, certificates, store,
    metergen: new MeterGen(base),
    metergenWith: (over) => new MeterGen({ ...base, ...over }),
    rootDer: () => trust.current(),
    caIssued: () => new CaDirectory(caDir).issued(),
    close: async () => {
      await server.close();
      caSigner.close();
      vendorSigner.close();
      await module.close();
    },
  };
}

/** Writes DER as PEM into `dir` and returns the path (for openssl). */
export function pemFile(dir: string, name: string, label: PemLabel, der: Buffer | Buffer[]): string {
  const path = join(dir, name);
  writeFileSync(path, (Array.isArray(der) ? der : [der]).map((d) => toPem(label, d)).join(''));
  return path;
}

/** Runs the openssl CLI; never throws (exit code and both streams returned). */
export async function openssl(...args: string[]): Promise<{ code: number; out: string }> {
  try {
    const r = await run('openssl', args);
    return { code: 0, out: r.stdout + r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: typeof x.code === 'number' ? x.code : 1, out: `${x.stdout ?? ''}${x.stderr ?? ''}` };
  }
}

/** `openssl verify` of a leaf against a root, with intermediates as untrusted. */
export async function opensslVerify(dir: string, leaf: Buffer, root: Buffer, intermediates: Buffer[]): Promise<{ code: number; out: string }> {
  const tag = leaf.subarray(-8).toString('hex');
  const rootFile = pemFile(dir, `root-${tag}.pem`, 'CERTIFICATE', root);
  const leafFile = pemFile(dir, `leaf-${tag}.pem`, 'CERTIFICATE', leaf);
  const args = ['verify', '-x509_strict', '-CAfile', rootFile];
  if (intermediates.length) args.push('-untrusted', pemFile(dir, `chain-${tag}.pem`, 'CERTIFICATE', intermediates));
  return openssl(...args, leafFile);
}
