import { vbiError, VbiError } from '@vbi/core/errors';
import { TokenSigner, SigningKeyRef } from '../../hsm/token-signer';
import { buildCertificate } from '../cert-builder';
import { CertInfo, readCertInfo } from '@vbi/core/pki/cert-info';
import { CertificateRequestMessage, CertificateResponseMessage } from '../ca-protocol';
import { CsrInfo, csrSelfSignatureValid, parseCsr } from '../csr';
import { buildName } from '@vbi/core/pki/names';
import { rawEcdsaSigner, X509Signer } from '@vbi/core/pki/signer';
import { countersignatureValid } from '../vendor-ra';
import { CaDirectory, CaState } from './ca-directory';
import { acceptedKey, leafExtensions, leafProfileFor, validity } from './profile';
import { randomSerial } from './serial';

/**
 * The dev/test postal CA: checks the vendor countersignature and the request, applies the
 * certificate profile (profile.ts) and issues X.509 v3 certificates with the issuing key in
 * the CA token. Production uses the real postal CA; MeterGen only knows its URL.
 */
export class PostalCa {
  private readonly issuedSerials: Set<string>;

  private constructor(
    private readonly dir: CaDirectory,
    private readonly state: CaState,
    private readonly signer: X509Signer,
    private readonly issuing: CertInfo,
    private readonly root: CertInfo,
    private readonly clock: () => number,
  ) {
    this.issuedSerials = new Set(dir.issued().map((r) => r.serial));
  }

  /**
   * Loads the CA from its directory and checks that the CA token holds the key its issuing
   * certificate names (CONFIG_INVALID otherwise). The signer must be logged in to the CA token.
   */
  static async open(req: { dir: string; signer: TokenSigner; clock?: () => number }): Promise<PostalCa> {
    const dir = new CaDirectory(req.dir);
    const state = dir.readState();
    const issuing = readCertInfo(dir.readCertificate(`issuing-${state.rootGeneration}.pem`));
    const root = readCertInfo(dir.readCertificate(`root-${state.rootGeneration}.pem`));
    const key: SigningKeyRef = { role: 'ca-issuing', generation: state.issuingGeneration };
    if (!(await req.signer.publicKeySpki(key)).equals(issuing.spki)) {
      throw vbiError('CONFIG_INVALID', `issuing certificate in ${req.dir} does not match the issuing key in token '${req.signer.tokenLabel}'`);
    }
    const signer = rawEcdsaSigner((data) => req.signer.sign({ key, data }));
    return new PostalCa(dir, state, signer, issuing, root, req.clock ?? Date.now);
  }

  /** [issuing CA, root]: what relying parties may use to build the path (they trust only their own root). */
  chain(): Buffer[] {
    return [this.issuing.der, this.root.der];
  }

  /** Checks the request (refusals are CA_REQUEST_REFUSED with the reason) and issues. */
  async issue(req: CertificateRequestMessage): Promise<CertificateResponseMessage> {
    const refuse = (why: string): VbiError => vbiError('CA_REQUEST_REFUSED', why);
    // read per request: an RA registered by the ceremony counts without a CA restart
    const raSpki = this.dir.raKeys().get(req.raKeyId);
    if (!raSpki) throw refuse(`RA key '${req.raKeyId}' is not registered with this CA`);
    if (!countersignatureValid({ raSpki, csrDer: req.csr, raSignature: req.raSignature })) {
      throw refuse(`vendor countersignature does not verify under RA key '${req.raKeyId}'`);
    }
    let csr: CsrInfo;
    try {
      csr = parseCsr(req.csr);
    } catch (e) {
      throw refuse(`csr is not a DER PKCS#10 request: ${(e as Error).message}`);
    }
    if (!csrSelfSignatureValid(csr)) throw refuse('request is not signed by the key it asks to certify (or not with SHA-256)');
    if (!csr.subject) throw refuse('request subject must be CN with optional OU and O, each once');
    const profile = leafProfileFor(csr.subject.organizationalUnit);
    if (!profile) throw refuse(`subject OU '${csr.subject.organizationalUnit ?? ''}' names no certificate profile (indicium, module-identity)`);
    if (!profile.commonName.test(csr.subject.commonName)) throw refuse(`subject CN '${csr.subject.commonName}' is not a valid ${profile.organizationalUnit} name`);
    if (!acceptedKey(profile, csr.spki)) throw refuse(`the ${profile.organizationalUnit} profile accepts only ${profile.keys.join(' or ')} keys`);

    const now = this.clock();
    const v = this.state.validity;
    const { notBefore, notAfter } = validity({
      now, backdateSeconds: v.backdateSeconds, issuerNotAfter: this.issuing.notAfter,
      days: profile.organizationalUnit === 'indicium' ? v.indiciumDays : v.moduleIdentityDays,
    });
    if (notAfter.getTime() <= now) throw vbiError('CA_UNAVAILABLE', 'the issuing CA certificate has expired');
    const serial = this.freshSerial();
    const certificate = await buildCertificate({
      serial,
      issuer: this.issuing.cert.subject,
      subject: buildName({ organization: csr.subject.organization, organizationalUnit: profile.organizationalUnit, commonName: csr.subject.commonName }),
      spki: csr.spki,
      notBefore,
      notAfter,
      extensions: leafExtensions({ profile, spki: csr.spki, issuerSpki: this.issuing.spki }),
    }, this.signer);
    const serialHex = serial.toString('hex');
    this.dir.appendIssued({
      serial: serialHex, profile: profile.organizationalUnit, commonName: csr.subject.commonName, raKeyId: req.raKeyId,
      notBefore: notBefore.toISOString(), notAfter: notAfter.toISOString(), issuedAt: new Date(now).toISOString(),
    });
    return { certificate, chain: this.chain() };
  }

  /**
   * A random serial this CA has never issued (a collision is astronomically unlikely, but
   * checked), reserved at once so that concurrent requests cannot draw the same one.
   */
  private freshSerial(): Buffer {
    for (let i = 0; i < 8; i++) {
      const s = randomSerial();
      if (this.issuedSerials.has(s.toString('hex'))) continue;
      this.issuedSerials.add(s.toString('hex'));
      return s;
    }
    throw vbiError('CA_UNAVAILABLE', 'could not draw an unused serial number');
  }
}
