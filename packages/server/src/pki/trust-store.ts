import { CertInfo, readCertInfo } from '@vbi/core/pki/cert-info';
import { toPem } from '@vbi/core/pki/pem';
import { RolloverCertificates, verifyRollover } from './rollover';

/**
 * The relying party's trust anchors: the postal CA root it installed out of band (certs/,
 * WO 99/41690: "distributed by means of regular US certified mail"), plus the roots that
 * replaced it through accepted rollovers. The newest is `current()`; older ones stay, so that
 * certificates issued before a rollover (and the indicia they verify) remain verifiable.
 */
export class TrustStore {
  private readonly roots: CertInfo[];

  /** `roots`: one root, or every root of the file oldest first (the last is current). */
  constructor(roots: Buffer | Buffer[], private readonly clock: () => number = Date.now) {
    const list = Array.isArray(roots) ? roots : [roots];
    if (list.length === 0) throw new Error('a trust store needs at least one root');
    this.roots = list.map(readCertInfo);
  }

  /** The root new certificates must chain to. */
  current(): Buffer {
    return this.roots[this.roots.length - 1].der;
  }

  /** Every root ever trusted, oldest first (for verifying certificates issued before a rollover). */
  anchors(): Buffer[] {
    return this.roots.map((r) => r.der);
  }

  /** Every root as PEM, oldest first: what to write back to the trust anchor file after a rollover. */
  toPem(): string {
    return this.roots.map((r) => toPem('CERTIFICATE', r.der)).join('');
  }

  /** Installs the next root after verifyRollover accepted it; throws ROLLOVER_REJECTED otherwise. */
  acceptRollover(next: RolloverCertificates): Buffer {
    const root = verifyRollover({ current: this.current(), next, at: new Date(this.clock()) });
    this.roots.push(root);
    return root.der;
  }
}
