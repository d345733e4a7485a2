import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { LibraryHandle, findSlotByLabel } from '../hsm/pkcs11-library';
import { initToken } from '../hsm/key-ceremony';
import { TokenSigner } from '../hsm/token-signer';
import { vbiError } from '@vbi/core/errors';
import { createVendorRaKey, initCa, registerRa } from './ca/ca-ceremony';
import { CaDirectory } from './ca/ca-directory';
import { PostalCa } from './ca/postal-ca';
import { RunningCa, startCaServer } from './ca/http-server';
import { HttpCaClient } from './ca-client';
import { TrustStore } from './trust-store';
import { VendorRa } from './vendor-ra';
import { MeterGen } from './metergen';
import { KeyRenewalStore, MeterGenStore } from './meter-store';

/** The RA key id under which the dev CA registers the dev vendor's RA key. */
export const DEV_RA_KEY_ID = 'dev-vendor';

export interface DevPki {
  caUrl: string;
  ca: HttpCaClient;
  /** Issuing CA certificates (verifiers need them between an indicium certificate and the root). */
  intermediates: Buffer[];
  trust: TrustStore;
  ra: VendorRa;
  /** The dev CA's directory (root.pem, issuing.pem, issued index). */
  caDir: string;
  metergen(store: MeterGenStore & KeyRenewalStore, opts?: { keyLifetimeMs?: number; clock?: () => number }): MeterGen;
  close(): Promise<void>;
}

/**
 * The development and test PKI in one call: CA token and vendor token (provisioned with the
 * given PINs when missing, SoftHSM2 only), the CA created in `caDir`, the vendor RA registered,
 * and the CA served over HTTP on 127.0.0.1. Production has none of this: MeterGen talks to the
 * postal CA at CA_URL (packages/server/src/config/metergen-config.ts).
 */
export async function startDevPki(req: {
  library: LibraryHandle; caLabel: string; vendorLabel: string; soPin: string; userPin: string; caDir: string; port?: number;
}): Promise<DevPki> {
  const tokens = { library: req.library, soPin: req.soPin, userPin: req.userPin };
  const provisioned = (label: string) => {
    try {
      findSlotByLabel(req.library, label);
      return true;
    } catch {
      return false;
    }
  };
  if (!provisioned(req.caLabel) || !provisioned(req.vendorLabel) || !existsSync(join(req.caDir, 'root.pem'))) {
    const missing = [req.caLabel, req.vendorLabel].filter((l) => !provisioned(l));
    if (missing.length && req.library.profile.provisioning !== 'free-slot') {
      throw vbiError('TOKEN_NOT_FOUND', `the dev PKI needs tokens ${missing.join(', ')}: it creates them only on a library whose profile has free slots (SoftHSM2)`);
    }
    if (!provisioned(req.caLabel)) await initToken({ ...tokens, label: req.caLabel });
    if (!provisioned(req.vendorLabel)) await initToken({ ...tokens, label: req.vendorLabel });
    await initCa({ ...tokens, tokenLabel: req.caLabel, dir: req.caDir });
    const ra = await createVendorRaKey({ ...tokens, tokenLabel: req.vendorLabel });
    registerRa({ dir: req.caDir, raKeyId: DEV_RA_KEY_ID, publicKeySpki: ra.publicKeySpki });
  }
  const caSigner = await TokenSigner.open({ library: req.library, tokenLabel: req.caLabel, userPin: req.userPin });
  const vendorSigner = await TokenSigner.open({ library: req.library, tokenLabel: req.vendorLabel, userPin: req.userPin });
  const ca = await PostalCa.open({ dir: req.caDir, signer: caSigner });
  let server: RunningCa;
  try {
    server = await startCaServer({ ca, host: '127.0.0.1', port: req.port ?? 0 });
  } catch (e) {
    caSigner.close();
    vendorSigner.close();
    throw e;
  }
  return devPkiAt({
    caUrl: server.url, caDir: req.caDir, vendorSigner,
    close: async () => {
      await server.close();
      caSigner.close();
    },
  });
}

/**
 * The dev PKI another process serves (startDevPki in shard 0's process, at `caUrl`), for the
 * process of another shard on the same machine: the same vendor token as RA, the CA's
 * certificates read from its directory; the CA token and the CA's files stay with the process
 * that serves it.
 */
export async function attachDevPki(req: { library: LibraryHandle; vendorLabel: string; userPin: string; caDir: string; caUrl: string }): Promise<DevPki> {
  if (!existsSync(join(req.caDir, 'root.pem'))) {
    throw vbiError('CONFIG_INVALID', `no dev CA in ${req.caDir}: start the process of shard 0 first (it creates and serves the dev CA)`);
  }
  const vendorSigner = await TokenSigner.open({ library: req.library, tokenLabel: req.vendorLabel, userPin: req.userPin });
  return devPkiAt({ caUrl: req.caUrl, caDir: req.caDir, vendorSigner, close: async () => undefined });
}

function devPkiAt(req: { caUrl: string; caDir: string; vendorSigner: TokenSigner; close: () => Promise<void> }): DevPki {
  const ra = new VendorRa(req.vendorSigner, DEV_RA_KEY_ID);
  const caDirectory = new CaDirectory(req.caDir);
  const trust = new TrustStore(caDirectory.readCertificate('root.pem'));
  const intermediates = readdirSync(req.caDir).filter((f) => /^issuing-\d+\.pem$/.test(f)).map((f) => caDirectory.readCertificate(f));
  return {
    caUrl: req.caUrl,
    ca: new HttpCaClient(req.caUrl),
    intermediates,
    trust,
    ra,
    caDir: req.caDir,
    metergen: (store, opts = {}) => new MeterGen({ store, ca: new HttpCaClient(req.caUrl), ra, trust, organization: 'VBI Development Vendor', ...opts }),
    close: async () => {
      await req.close();
      req.vendorSigner.close();
    },
  };
}
