import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CertificateLookup, certificateSerial, parseX509 } from './certificates';

/**
 * A CertificateLookup over a directory of published indicium key certificates (*.der, *.pem,
 * *.crt, *.cer; one certificate per file), indexed by serial when created. For offline
 * verifiers that download the CA's certificate bundle; unreadable files are skipped.
 */
export function directoryCertificateLookup(dir: string): CertificateLookup {
  const bySerial = new Map<string, Buffer>();
  for (const name of readdirSync(dir)) {
    if (!/\.(der|pem|crt|cer)$/i.test(name)) continue;
    try {
      const cert = parseX509(readFileSync(join(dir, name)));
      bySerial.set(certificateSerial(cert), cert.raw);
    } catch {
      // not a certificate: ignore
    }
  }
  return { bySerial: async (serialHex) => bySerial.get(serialHex) ?? null };
}
