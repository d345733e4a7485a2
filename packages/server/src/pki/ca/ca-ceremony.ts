import { vbiError } from '@vbi/core/errors';
import { LibraryHandle } from '../../hsm/pkcs11-library';
import { generateSigningKey } from '../../hsm/signing-keys';
import { TokenSigner, SigningKeyRef } from '../../hsm/token-signer';
import { buildCertificate } from '../cert-builder';
import { readCertInfo } from '@vbi/core/pki/cert-info';
import { spkiHash } from '@vbi/core/pki/extensions';
import { buildName } from '@vbi/core/pki/names';
import { rawEcdsaSigner, X509Signer } from '@vbi/core/pki/signer';
import { randomSerial } from './serial';
import { CaDirectory, CaState } from './ca-directory';
import { DEFAULT_VALIDITY, ValidityConfig, issuingExtensions, linkExtensions, rootExtensions, validity } from './profile';

/**
 * Officer steps of the dev/test postal CA (run through `npm run ceremony -- ca-init | ca-rollover`).
 * Keys are generated in the CA token (SO PIN proven first); certificates are written to the CA
 * directory, never a private key.
 */
export interface CaTokenRef {
  library: LibraryHandle;
  tokenLabel: string;
  soPin: string;
  userPin: string;
}

/** What a CA ceremony step reports (and writes to its transcript). */
export interface CaSummary {
  dir: string;
  rootGeneration: number;
  rootSerial: string;
  rootSpkiSha256: string;
  nextRootSpkiSha256: string;
  issuingSerial: string;
  files: string[];
}

const root = (generation: number): SigningKeyRef => ({ role: 'ca-root', generation });
const issuing = (generation: number): SigningKeyRef => ({ role: 'ca-issuing', generation });

async function withSigner<T>(t: CaTokenRef, fn: (s: TokenSigner) => Promise<T>): Promise<T> {
  const signer = await TokenSigner.open({ library: t.library, tokenLabel: t.tokenLabel, userPin: t.userPin });
  try {
    return await fn(signer);
  } finally {
    signer.close();
  }
}

function tokenSigner(s: TokenSigner, key: SigningKeyRef): X509Signer {
  return rawEcdsaSigner((data) => s.sign({ key, data }));
}

/**
 * Creates a CA: root key generations 1 and 2 (2 is published as the successor), issuing key 1,
 * the self-signed root certificate (generation 1) and the issuing CA certificate. Refuses a
 * directory that already holds a CA.
 */
export async function initCa(req: CaTokenRef & {
  dir: string; organization?: string; rootName?: string; issuingName?: string; validity?: Partial<ValidityConfig>; clock?: () => number;
}): Promise<CaSummary> {
  const dir = new CaDirectory(req.dir);
  if (dir.exists()) throw vbiError('KEY_EXISTS', `${req.dir} already holds a CA; use ca-rollover`);
  const state: CaState = {
    version: 1,
    tokenLabel: req.tokenLabel,
    organization: req.organization ?? 'VBI Development Postal CA',
    rootName: req.rootName ?? 'VBI Dev Postal Root CA',
    issuingName: req.issuingName ?? 'VBI Dev Postal Issuing CA',
    rootGeneration: 1,
    issuingGeneration: 1,
    validity: { ...DEFAULT_VALIDITY, ...req.validity },
  };
  const gen = (ref: SigningKeyRef) => generateSigningKey({ library: req.library, label: req.tokenLabel, soPin: req.soPin, userPin: req.userPin, ...ref });
  const r1 = await gen(root(1));
  const r2 = await gen(root(2));
  const i1 = await gen(issuing(1));
  const now = (req.clock ?? Date.now)();
  return withSigner(req, async (signer) => {
    const rootDer = await selfSignedRoot({ state, signer, generation: 1, spki: r1.publicKeySpki, nextSpki: r2.publicKeySpki, now });
    const issuingDer = await issuingCertificate({ state, signer, rootDer, rootGeneration: 1, spki: i1.publicKeySpki, now });
    const files = [dir.writeCertificate('root-1.pem', rootDer), dir.writeCertificate('issuing-1.pem', issuingDer), dir.writeCertificate('root.pem', rootDer)];
    dir.writeState(state);
    files.push(`${req.dir}/ca.json`);
    return summary(req.dir, state, rootDer, r2.publicKeySpki, issuingDer, files);
  });
}

/**
 * Rolls the root over (WO 99/41690): root generation g+1, whose hash generation g published,
 * becomes the root. Generation g+2 is created and published in its certificates; the link
 * certificate (g+1 certified by g) and the new self-signed root are written for relying parties
 * (TrustStore.acceptRollover), and the issuing key is re-certified under the new root.
 */
export async function rolloverCa(req: CaTokenRef & { dir: string; clock?: () => number }): Promise<CaSummary & { linkFile: string }> {
  const dir = new CaDirectory(req.dir);
  const state = dir.readState();
  const g = state.rootGeneration;
  const after = await generateSigningKey({ library: req.library, label: req.tokenLabel, soPin: req.soPin, userPin: req.userPin, ...root(g + 2) });
  const now = (req.clock ?? Date.now)();
  return withSigner(req, async (signer) => {
    const oldRoot = readCertInfo(dir.readCertificate(`root-${g}.pem`));
    const newSpki = await signer.publicKeySpki(root(g + 1));
    const next: CaState = { ...state, rootGeneration: g + 1 };
    const rootDer = await selfSignedRoot({ state: next, signer, generation: g + 1, spki: newSpki, nextSpki: after.publicKeySpki, now });
    const { notBefore, notAfter } = validity({ now, days: state.validity.rootDays, backdateSeconds: state.validity.backdateSeconds });
    const linkDer = await buildCertificate({
      serial: randomSerial(),
      issuer: oldRoot.cert.subject,
      subject: buildName({ organization: state.organization, commonName: state.rootName }),
      spki: newSpki,
      notBefore,
      notAfter,
      extensions: linkExtensions({ spki: newSpki, nextSpki: after.publicKeySpki, oldSpki: oldRoot.spki }),
    }, tokenSigner(signer, root(g)));
    const issuingSpki = await signer.publicKeySpki(issuing(state.issuingGeneration));
    const issuingDer = await issuingCertificate({ state: next, signer, rootDer, rootGeneration: g + 1, spki: issuingSpki, now });
    const linkFile = dir.writeCertificate(`root-link-${g + 1}.pem`, linkDer);
    const files = [
      dir.writeCertificate(`root-${g + 1}.pem`, rootDer), linkFile,
      dir.writeCertificate(`issuing-${g + 1}.pem`, issuingDer), dir.writeCertificate('root.pem', rootDer),
    ];
    // Written last: until here the CA keeps issuing under the old root.
    dir.writeState(next);
    return { ...summary(req.dir, next, rootDer, after.publicKeySpki, issuingDer, files), linkFile };
  });
}

async function selfSignedRoot(req: { state: CaState; signer: TokenSigner; generation: number; spki: Buffer; nextSpki: Buffer; now: number }): Promise<Buffer> {
  const name = buildName({ organization: req.state.organization, commonName: req.state.rootName });
  const { notBefore, notAfter } = validity({ now: req.now, days: req.state.validity.rootDays, backdateSeconds: req.state.validity.backdateSeconds });
  return buildCertificate({
    serial: randomSerial(), issuer: name, subject: name, spki: req.spki, notBefore, notAfter,
    extensions: rootExtensions({ spki: req.spki, nextSpki: req.nextSpki }),
  }, tokenSigner(req.signer, root(req.generation)));
}

async function issuingCertificate(req: { state: CaState; signer: TokenSigner; rootDer: Buffer; rootGeneration: number; spki: Buffer; now: number }): Promise<Buffer> {
  const rootInfo = readCertInfo(req.rootDer);
  const { notBefore, notAfter } = validity({ now: req.now, days: req.state.validity.issuingDays, backdateSeconds: req.state.validity.backdateSeconds, issuerNotAfter: rootInfo.notAfter });
  return buildCertificate({
    serial: randomSerial(),
    issuer: rootInfo.cert.subject,
    subject: buildName({ organization: req.state.organization, commonName: req.state.issuingName }),
    spki: req.spki, notBefore, notAfter,
    extensions: issuingExtensions({ spki: req.spki, rootSpki: rootInfo.spki }),
  }, tokenSigner(req.signer, root(req.rootGeneration)));
}

function summary(dir: string, state: CaState, rootDer: Buffer, nextSpki: Buffer, issuingDer: Buffer, files: string[]): CaSummary {
  const r = readCertInfo(rootDer);
  return {
    dir, rootGeneration: state.rootGeneration, rootSerial: r.serialHex,
    rootSpkiSha256: spkiHash(r.spki).toString('hex'), nextRootSpkiSha256: spkiHash(nextSpki).toString('hex'),
    issuingSerial: readCertInfo(issuingDer).serialHex, files,
  };
}

/** Creates the vendor RA key (generation 1) in the vendor token; returns its public key for registration. */
export async function createVendorRaKey(req: { library: LibraryHandle; tokenLabel: string; soPin: string; userPin: string; generation?: number }): Promise<{ keyLabel: string; publicKeySpki: Buffer }> {
  return generateSigningKey({ library: req.library, label: req.tokenLabel, soPin: req.soPin, userPin: req.userPin, role: 'vendor-ra', generation: req.generation ?? 1 });
}

/** Registers a vendor RA public key with the CA (the CA then accepts its countersignatures). */
export function registerRa(req: { dir: string; raKeyId: string; publicKeySpki: Buffer }): string {
  const dir = new CaDirectory(req.dir);
  dir.readState(); // must be a CA directory
  return dir.registerRa(req.raKeyId, req.publicKeySpki);
}
