import { CertInfo, readCertInfo } from '@vbi/core/pki/cert-info';

/** One certified indicium key, as verifiers look it up (by the serial an indicium carries). */
export interface CertificateRecord {
  serialHex: string;
  meterId: string;
  certificateDer: Buffer;
  notBefore: number;
  notAfter: number;
}

/**
 * Certificates of indicium keys by serial. Every certificate ever stored in a package stays
 * here after its key is renewed: indicia printed before the renewal carry the old serial and
 * must keep verifying. The transaction engine implements it on PostgreSQL.
 */
export interface CertificateStore {
  put(rec: CertificateRecord): Promise<void>;
  getBySerial(serialHex: string): Promise<CertificateRecord | undefined>;
  listByMeter(meterId: string): Promise<CertificateRecord[]>;
}

/** A record from a certificate DER (serial and validity read from the certificate itself). */
export function certificateRecord(meterId: string, certificateDer: Buffer): CertificateRecord {
  const info: CertInfo = readCertInfo(certificateDer);
  return { serialHex: info.serialHex, meterId, certificateDer, notBefore: info.notBefore.getTime(), notAfter: info.notAfter.getTime() };
}

/** In-memory CertificateStore (tests, dev). */
export class MemoryCertificateStore implements CertificateStore {
  private readonly bySerial = new Map<string, CertificateRecord>();

  async put(rec: CertificateRecord): Promise<void> {
    const existing = this.bySerial.get(rec.serialHex);
    if (existing && !existing.certificateDer.equals(rec.certificateDer)) throw new Error(`serial ${rec.serialHex} already names another certificate`);
    this.bySerial.set(rec.serialHex, rec);
  }

  async getBySerial(serialHex: string): Promise<CertificateRecord | undefined> {
    return this.bySerial.get(serialHex);
  }

  async listByMeter(meterId: string): Promise<CertificateRecord[]> {
    return [...this.bySerial.values()].filter((r) => r.meterId === meterId).sort((a, b) => a.notBefore - b.notBefore);
  }
}
