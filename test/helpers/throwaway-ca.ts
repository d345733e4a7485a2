import { execFileSync } from 'node:child_process';
import { createPublicKey, randomBytes, X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A throwaway certificate authority made with the openssl CLI for indicium verification
 * tests (the real CA and MeterGen live in packages/server/src/pki/). Keys are files in a test temp dir.
 */
export interface TestCa {
  name: string;
  certPath: string;
  keyPath: string;
  certPem: string;
  certDer: Buffer;
}

function openssl(args: string[]): Buffer {
  return execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
}

function caFiles(dir: string, name: string): { certPath: string; keyPath: string; slug: string } {
  mkdirSync(dir, { recursive: true });
  const slug = name.replace(/[^A-Za-z0-9]+/g, '-').toLowerCase();
  return { certPath: join(dir, `${slug}.pem`), keyPath: join(dir, `${slug}.key`), slug };
}

function load(name: string, certPath: string, keyPath: string): TestCa {
  const certPem = readFileSync(certPath, 'utf8');
  return { name, certPath, keyPath, certPem, certDer: new X509Certificate(certPem).raw };
}

/** A self-signed P-256 root, CA:TRUE, valid for `days` from now. */
export function createRootCa(dir: string, name = 'Test Postal Root', days = 3650): TestCa {
  const { certPath, keyPath } = caFiles(dir, name);
  openssl([
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${name}`,
    '-days', String(days), '-keyout', keyPath, '-out', certPath,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return load(name, certPath, keyPath);
}

/** An intermediate CA issued by `issuer`. */
export function createIntermediateCa(dir: string, issuer: TestCa, name: string, days = 1825): TestCa {
  const { certPath, keyPath, slug } = caFiles(dir, name);
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', keyPath]);
  const ext = join(dir, `${slug}.ext`);
  writeFileSync(ext, 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n');
  openssl(['pkey', '-in', keyPath, '-pubout', '-out', `${keyPath}.pub`]);
  openssl([
    'x509', '-new', '-subj', `/CN=${name}`, '-force_pubkey', `${keyPath}.pub`, '-CA', issuer.certPath, '-CAkey', issuer.keyPath,
    '-set_serial', `0x${randomSerial()}`, '-days', String(days), '-extfile', ext, '-out', certPath,
  ]);
  return load(name, certPath, keyPath);
}

/**
 * An end-entity certificate for an indicium public key (SPKI DER, e.g. from the HSM) issued
 * by `ca`, valid from now for `days`. Returns the DER certificate.
 */
export function issueIndiciumCertificate(
  dir: string,
  ca: TestCa,
  req: { spki: Buffer; serialHex?: string; days?: number; subject?: string; extendedKeyUsage?: string },
): Buffer {
  const serial = req.serialHex ?? randomSerial();
  const base = join(dir, `leaf-${serial}`);
  writeFileSync(`${base}.pub`, createPublicKey({ key: req.spki, format: 'der', type: 'spki' }).export({ type: 'spki', format: 'pem' }));
  const eku = req.extendedKeyUsage ? `extendedKeyUsage=${req.extendedKeyUsage}\n` : '';
  writeFileSync(`${base}.ext`, `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n${eku}`);
  openssl([
    'x509', '-new', '-subj', req.subject ?? `/CN=indicium key ${serial}`, '-force_pubkey', `${base}.pub`,
    '-CA', ca.certPath, '-CAkey', ca.keyPath, '-set_serial', `0x${serial}`, '-days', String(req.days ?? 365),
    '-extfile', `${base}.ext`, '-outform', 'DER', '-out', `${base}.der`,
  ]);
  return readFileSync(`${base}.der`);
}

/** A positive 8-byte serial without a leading zero byte (the canonical form). */
export function randomSerial(): string {
  const b = randomBytes(8);
  b[0] = (b[0] & 0x7f) | 0x10;
  return b.toString('hex');
}

/** A TLS end-entity certificate and key issued by `ca`: a server's for 127.0.0.1, or a client's. */
export function issueTlsCertificate(dir: string, ca: TestCa, req: { name: string; use: 'server' | 'client' }): { certPath: string; keyPath: string } {
  const { certPath, keyPath, slug } = caFiles(dir, req.name);
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', keyPath]);
  openssl(['pkey', '-in', keyPath, '-pubout', '-out', `${keyPath}.pub`]);
  const ext = join(dir, `${slug}.ext`);
  writeFileSync(ext, 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n'
    + (req.use === 'server' ? 'extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n' : 'extendedKeyUsage=clientAuth\n'));
  openssl([
    'x509', '-new', '-subj', `/CN=${req.name}`, '-force_pubkey', `${keyPath}.pub`, '-CA', ca.certPath, '-CAkey', ca.keyPath,
    '-set_serial', `0x${randomSerial()}`, '-days', '2', '-extfile', ext, '-out', certPath,
  ]);
  return { certPath, keyPath };
}
