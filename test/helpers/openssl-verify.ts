import { execFileSync, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { IndiciumKeyAlgorithm } from '@vbi/server/hsm/hsm-module';
import { ecdsaRawToDer } from '@vbi/core/indicium/signature';

/**
 * `openssl dgst -sha256 -verify pub.pem -signature sig data`, with the public key taken out of
 * the certificate by openssl itself and EC signatures converted from raw r||s to DER.
 */
export function opensslVerify(dir: string, certDer: Buffer, data: Buffer, signature: Buffer, algorithm: IndiciumKeyAlgorithm): { ok: boolean; out: string } {
  const base = join(dir, `ossl-${process.hrtime.bigint()}`);
  writeFileSync(`${base}.cert.der`, certDer);
  const pub = execFileSync('openssl', ['x509', '-inform', 'DER', '-in', `${base}.cert.der`, '-pubkey', '-noout']);
  writeFileSync(`${base}.pub.pem`, pub);
  writeFileSync(`${base}.data`, data);
  writeFileSync(`${base}.sig`, algorithm === 'ec-p256' ? ecdsaRawToDer(signature) : signature);
  const r = spawnSync('openssl', ['dgst', '-sha256', '-verify', `${base}.pub.pem`, '-signature', `${base}.sig`, `${base}.data`]);
  return { ok: r.status === 0, out: r.stdout.toString().trim() };
}
