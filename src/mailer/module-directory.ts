import type { Knex } from 'knex';
import type { HsmModule } from '../hsm/hsm-module';
import { ModuleCertificate } from '../pki/module-identity';
import { toPem } from '../pki/pem';

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
    const row = await req.db('modules').where({ module_serial: m.serial }).first('identity_certificate');
    if (row?.identity_certificate) continue;
    const cert = await req.certify(m);
    await req.db('modules').where({ module_serial: m.serial }).update({ identity_certificate: cert.certificateDer, identity_chain: cert.chain });
  }
}

export async function moduleDirectory(req: { db: Knex; modules: HsmModule[]; oaepHash: 'sha1' | 'sha256' }): Promise<ModuleEntry[]> {
  const out: ModuleEntry[] = [];
  for (const m of req.modules) {
    const st = m.status().state;
    if (st !== 'Idle' && st !== 'User') continue;
    const row = await req.db('modules').where({ module_serial: m.serial }).first('identity_certificate', 'identity_chain');
    if (!row?.identity_certificate) continue;
    out.push({
      serial: m.serial,
      transportKey: m.transportPublicKey().toString('base64'),
      oaepHash: req.oaepHash,
      certificateChain: [toPem('CERTIFICATE', row.identity_certificate), ...((row.identity_chain ?? []) as Buffer[]).map((c) => toPem('CERTIFICATE', c))],
    });
  }
  return out;
}
