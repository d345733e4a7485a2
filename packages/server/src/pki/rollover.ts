import { vbiError } from '@vbi/core/errors';
import { CertInfo, readCertInfo } from '@vbi/core/pki/cert-info';
import { readNextCaKeyHash, spkiHash } from '@vbi/core/pki/extensions';
import { issuedBy } from '@vbi/core/pki/path';

/**
 * What a CA sends when it rolls its root key over (WO 99/41690 "Certification Authority
 * Certificate"; RFC 4210 4.4 names the two certificates NewWithOld and NewWithNew):
 *  - link:  the new key, certified by the CURRENT root key;
 *  - root:  the new key's self-signed certificate, the next trust anchor.
 */
export interface RolloverCertificates {
  linkCertificate: Buffer;
  rootCertificate: Buffer;
}

/**
 * Decides whether `next` may replace the trust anchor `current`. Accepted only if all hold:
 *  1. the link certificate's signature verifies under the current root key and names the
 *     current root as issuer;
 *  2. SHA-256 of the new key (DER SubjectPublicKeyInfo) equals the next-key hash the current
 *     root certificate published (id-vbi-nextCaKeyHash);
 *  3. the new root certificate is self-signed by that same key, has the same subject, is a CA
 *     certificate, valid at `at`, and publishes the hash of the key after it (so the chain of
 *     rollovers can go on).
 * Anything else is ROLLOVER_REJECTED with the reason. Returns the parsed new root.
 */
export function verifyRollover(req: { current: Buffer; next: RolloverCertificates; at: Date }): CertInfo {
  const reject = (why: string) => vbiError('ROLLOVER_REJECTED', `CA rollover rejected: ${why}`);
  const current = readCertInfo(req.current);
  const committed = readNextCaKeyHash(current.cert);
  if (!committed) throw reject('the current root certificate publishes no next-key hash');
  let link: CertInfo;
  let root: CertInfo;
  try {
    link = readCertInfo(req.next.linkCertificate);
    root = readCertInfo(req.next.rootCertificate);
  } catch (e) {
    throw reject((e as Error).message);
  }
  if (!issuedBy(link, current)) throw reject('the link certificate is not signed by the current root key');
  if (!spkiHash(link.spki).equals(committed)) throw reject('the new key does not hash to the value the current root certificate published');
  if (!root.spki.equals(link.spki)) throw reject('the new root certificate and the link certificate certify different keys');
  if (!issuedBy(root, root)) throw reject('the new root certificate is not self-signed by the new key');
  if (!root.subjectDer.equals(current.subjectDer) || !link.subjectDer.equals(current.subjectDer)) throw reject('the new certificates name another CA');
  for (const [what, c] of [['link', link], ['new root', root]] as const) {
    if (!c.isCa || (c.keyUsage && !c.keyUsage.has('keyCertSign'))) throw reject(`the ${what} certificate is not a CA certificate`);
    if (req.at < c.notBefore || req.at > c.notAfter) throw reject(`the ${what} certificate is not valid at ${req.at.toISOString()}`);
  }
  if (!readNextCaKeyHash(root.cert)) throw reject('the new root certificate publishes no next-key hash');
  return root;
}
