import type { Knex } from 'knex';
import type { HsmModule } from '../hsm/hsm-module';
import { ModuleCertificate } from '../pki/module-identity';
import { toPem } from '@vbi/core/pki/pem';
import { identityCertificateOf, identityOf, storeIdentityCertificate } from '../db/repositories/modules';

/** What a client needs to trust a module and encrypt to it (docs/protocol.md, registration). */
export interface ModuleEntry {
  serial: string;
  /** base64 SubjectPublicKeyInfo DER of the RSA transport key. */
  transportKey: string;
  oaepHash: 'sha1' | 'sha256';
  /** Identity certificate, then the issuing CA (PEM); the client holds the root. */
  certificateChain: string[];
}

/**
 * Makes sure every module has an identity certificate from the postal CA (stored in the module
 * table), asking `certify` for the missing ones. Modules without a certificate cannot register
 * clients.
 */
export async function ensureModuleCertificates(req: { db: Knex; modules: HsmModule[]; certify: (m: HsmModule) => Promise<ModuleCertificate> }): Promise<void> {
  for (const m of req.modules) {
    const row = await identityCertificateOf(req.db, m.serial);
    if (row?.identity_certificate) continue;
    const cert = await req.certify(m);
    await storeIdentityCertificate(req.db, m.serial, cert.certificateDer, cert.chain);
  }
}

export async function moduleDirectory(req: { db: Knex; modules: HsmModule[]; oaepHash: 'sha1' | 'sha256' }): Promise<ModuleEntry[]> {
  const out: ModuleEntry[] = [];
  for (const m of req.modules) {
    const st = m.status().state;
    if (st !== 'Idle' && st !== 'User') continue;
    const row = await identityOf(req.db, m.serial);
    if (!row?.identity_certificate) continue;
    out.push({
      serial: m.serial,
      transportKey: m.transportPublicKey().toString('base64'),
      oaepHash: req.oaepHash,
      certificateChain: [toPem('CERTIFICATE', row.identity_certificate), ...(row.identity_chain ?? []).map((c) => toPem('CERTIFICATE', c))],
    });
  }
  return out;
}
