import { X509Certificate } from 'node:crypto';
import { isVbiError } from '../errors';
import {
  CertificateLookup,
  CertificateSummary,
  certificateSerial,
  chainToAnchor,
  keyMatchesAlgorithm,
  allowsIndiciumSigning,
  parseX509,
  profileMeterId,
  summarise,
  validOnDay,
} from './certificates';
import { indiciumDigest } from './digest';
import { IndiciumFields } from './fields';
import { decodeIndicium, DecodedIndicium } from './layout';
import { FirstSighting, ScanStore, Sighting } from './scan-store';
import { verifyIndiciumSignature } from './signature';

/**
 * Result codes of indicium verification. Stable: printed by the CLI, stored by callers,
 * documented in docs/indicium.md. Never rename; append only.
 */
export const VERIFY_CODES = ['VALID', 'DUPLICATE', 'BAD_SIGNATURE', 'UNKNOWN_CERTIFICATE', 'CERT_EXPIRED', 'MALFORMED'] as const;
export type VerifyCode = (typeof VERIFY_CODES)[number];

export interface VerifyResult {
  code: VerifyCode;
  /** Lower-case explanation naming what failed; for people, not for parsing. */
  reason: string;
  /** Present once the bytes decoded. */
  fields?: IndiciumFields;
  /** Hex indiciumDigest(data), once the bytes decoded. */
  digest?: string;
  /** The certificate the signature was checked against. */
  certificate?: CertificateSummary;
  /** DUPLICATE only: the first sighting. */
  firstSeen?: FirstSighting;
}

/** What the onDuplicate policy is told. */
export interface DuplicateEvent {
  fields: IndiciumFields;
  digest: Buffer;
  firstSeen: FirstSighting;
  scan: Sighting;
}

export interface VerifierOptions {
  /** Root certificates (DER or PEM) that may issue, directly or via intermediates, indicium key certificates. */
  trustAnchors: Array<Buffer | string>;
  intermediates?: Array<Buffer | string>;
  /** Finds the certificate named by the indicium when the request supplies none. */
  certificates?: CertificateLookup;
  /** With a store, every authentic indicium is recorded and a second sighting is DUPLICATE. */
  scanStore?: ScanStore;
  /** Policy run on every DUPLICATE (fraud report, meter suspension); its errors propagate. */
  onDuplicate?: (event: DuplicateEvent) => Promise<void>;
  /**
   * The meter a certificate was issued to; an indicium whose meter ID differs is
   * UNKNOWN_CERTIFICATE, undefined means "not checked". Default: profileMeterId (subject
   * OU=indicium, CN=<meter ID>, as the postal CA issues them).
   */
  meterIdOf?: (cert: X509Certificate) => string | undefined;
  clock?: () => Date;
}

export interface VerifyRequest {
  /** The bytes read from the barcode. */
  indicium: Buffer;
  /** Check against this certificate (DER or PEM) instead of looking one up. */
  certificate?: Buffer | string;
  /** Where and when it was scanned; default: now, 'unspecified'. */
  scan?: { seenAt?: Date; location: string; plant?: string };
}

/**
 * Offline indicium verification: layout, certificate (supplied or looked up by serial),
 * signature, chain to a trust anchor, validity on the date of mailing, and duplicates.
 * The signature is checked before anything that depends on the signed fields (validity,
 * duplicates), so a changed byte is BAD_SIGNATURE or MALFORMED, never CERT_EXPIRED.
 */
export class IndiciumVerifier {
  private readonly anchors: X509Certificate[];
  private readonly intermediates: X509Certificate[];
  private readonly clock: () => Date;

  constructor(private readonly opts: VerifierOptions) {
    this.anchors = opts.trustAnchors.map(parseX509);
    this.intermediates = (opts.intermediates ?? []).map(parseX509);
    this.clock = opts.clock ?? (() => new Date());
  }

  async verify(req: VerifyRequest): Promise<VerifyResult> {
    let decoded: DecodedIndicium;
    try {
      decoded = decodeIndicium(req.indicium);
    } catch (e) {
      if (isVbiError(e, 'INDICIUM_MALFORMED')) return { code: 'MALFORMED', reason: e.message };
      throw e;
    }
    const { fields, data, signature } = decoded;
    const digest = indiciumDigest(data);
    const base = { fields, digest: digest.toString('hex') };

    const found = await this.certificateFor(fields, req.certificate);
    if (typeof found === 'string') return { ...base, code: 'UNKNOWN_CERTIFICATE', reason: found };
    const cert = found;
    const withCert = { ...base, certificate: summarise(cert) };

    if (!keyMatchesAlgorithm(cert, fields.algorithm)) {
      return { ...withCert, code: 'BAD_SIGNATURE', reason: `certificate key does not fit signature algorithm ${fields.algorithm}` };
    }
    if (!verifyIndiciumSignature({ algorithm: fields.algorithm, publicKey: cert.publicKey, data, signature })) {
      return { ...withCert, code: 'BAD_SIGNATURE', reason: 'signature does not verify with the certificate key' };
    }
    if (certificateSerial(cert) !== fields.certSerial) {
      return { ...withCert, code: 'UNKNOWN_CERTIFICATE', reason: `indicium names certificate ${fields.certSerial}, not ${certificateSerial(cert)}` };
    }
    if (!allowsIndiciumSigning(cert)) {
      return { ...withCert, code: 'UNKNOWN_CERTIFICATE', reason: 'certificate is not issued for indicium signing (extendedKeyUsage)' };
    }
    const owner = (this.opts.meterIdOf ?? profileMeterId)(cert);
    if (owner !== undefined && owner !== fields.meterId) {
      return { ...withCert, code: 'UNKNOWN_CERTIFICATE', reason: `certificate belongs to meter ${owner}, not ${fields.meterId}` };
    }
    const path = chainToAnchor(cert, this.intermediates, this.anchors);
    if (!path) return { ...withCert, code: 'UNKNOWN_CERTIFICATE', reason: 'certificate does not chain to a trusted root' };
    const stale = path.slice(0, -1).find((c) => !validOnDay(c, fields.dateOfMailing));
    if (stale) {
      return { ...withCert, code: 'CERT_EXPIRED', reason: `certificate ${certificateSerial(stale)} is not valid on the date of mailing ${fields.dateOfMailing}` };
    }

    if (this.opts.scanStore) {
      const scan: Sighting = {
        seenAt: req.scan?.seenAt ?? this.clock(), location: req.scan?.location ?? 'unspecified', ...(req.scan?.plant ? { plant: req.scan.plant } : {}),
      };
      const { firstSeen } = await this.opts.scanStore.record({ indiciumDigest: digest, meterId: fields.meterId, sequence: fields.sequence, ...scan });
      if (firstSeen) {
        await this.opts.onDuplicate?.({ fields, digest, firstSeen, scan });
        return {
          ...withCert,
          code: 'DUPLICATE',
          reason: `${firstSeen.otherIndicium ? `piece number ${fields.sequence} of meter ${fields.meterId} first seen on another indicium` : 'first seen'} at ${firstSeen.location} on ${firstSeen.seenAt.toISOString()}`,
          firstSeen,
        };
      }
    }
    return { ...withCert, code: 'VALID', reason: 'signature, certificate chain and date of mailing check out' };
  }

  /** The certificate to check against, or why there is none. */
  private async certificateFor(fields: IndiciumFields, supplied?: Buffer | string): Promise<X509Certificate | string> {
    let der: Buffer | string | null = supplied ?? null;
    if (der === null) {
      if (!this.opts.certificates) return 'no certificate supplied and no certificate lookup configured';
      der = await this.opts.certificates.bySerial(fields.certSerial);
      if (der === null) return `no certificate with serial ${fields.certSerial}`;
    }
    try {
      return parseX509(der);
    } catch {
      return 'certificate does not parse as X.509';
    }
  }
}
