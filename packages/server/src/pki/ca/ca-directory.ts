import { appendFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { vbiError } from '@vbi/core/errors';
import { fromPem, toPem } from '@vbi/core/pki/pem';
import { DEFAULT_VALIDITY, ValidityConfig } from './profile';

/**
 * The dev/test CA's public state on disk; its keys are in the CA token, never here.
 *
 *   ca.json               CaState (below)
 *   root.pem              the current root: the trust anchor relying parties install
 *   root-<g>.pem          self-signed root certificate of root key generation g
 *   root-link-<g>.pem     generation g's key certified by generation g-1 (rollover, g >= 2)
 *   issuing-<g>.pem       issuing CA certificate under root generation g
 *   ra/<raKeyId>.pem      registered vendor RA public keys (PUBLIC KEY)
 *   issued.jsonl          one line per issued certificate (serial uniqueness, audit)
 */
export interface CaState {
  version: 1;
  tokenLabel: string;
  organization: string;
  rootName: string;
  issuingName: string;
  /** Generation of the root key that signs now; generation+1 is its published successor. */
  rootGeneration: number;
  issuingGeneration: number;
  validity: ValidityConfig;
}

/** One line of issued.jsonl. */
export interface IssuedRecord {
  serial: string;
  profile: string;
  commonName: string;
  notBefore: string;
  notAfter: string;
  raKeyId: string;
  issuedAt: string;
}

/** Reads and writes the CA directory (layout above); files are replaced atomically (rename). */
export class CaDirectory {
  constructor(readonly dir: string) {}

  exists(): boolean {
    return existsSync(join(this.dir, 'ca.json'));
  }

  readState(): CaState {
    const file = join(this.dir, 'ca.json');
    if (!existsSync(file)) throw vbiError('CONFIG_INVALID', `no CA in ${this.dir} (run ceremony ca-init)`);
    const s = JSON.parse(readFileSync(file, 'utf8')) as CaState;
    return { ...s, validity: { ...DEFAULT_VALIDITY, ...s.validity } };
  }

  writeState(s: CaState): void {
    this.atomicWrite('ca.json', JSON.stringify(s, null, 2) + '\n');
  }

  readCertificate(name: string): Buffer {
    return fromPem('CERTIFICATE', readFileSync(join(this.dir, name), 'utf8'));
  }

  writeCertificate(name: string, der: Buffer): string {
    return this.atomicWrite(name, toPem('CERTIFICATE', der));
  }

  /** Registers an RA public key under an id; an id is never re-pointed at another key (KEY_EXISTS). */
  registerRa(raKeyId: string, spki: Buffer): string {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(raKeyId)) throw vbiError('BAD_REQUEST', 'RA key id must be 1-64 characters [A-Za-z0-9._-]');
    const existing = this.raKeys().get(raKeyId);
    if (existing && !existing.equals(spki)) throw vbiError('KEY_EXISTS', `RA key id '${raKeyId}' is registered with another key; use a new id`);
    mkdirSync(join(this.dir, 'ra'), { recursive: true });
    return this.atomicWrite(join('ra', `${raKeyId}.pem`), toPem('PUBLIC KEY', spki));
  }

  /** Registered RA public keys by id. */
  raKeys(): Map<string, Buffer> {
    const out = new Map<string, Buffer>();
    const dir = join(this.dir, 'ra');
    if (!existsSync(dir)) return out;
    for (const f of readdirSync(dir)) {
      if (f.endsWith('.pem')) out.set(f.slice(0, -4), fromPem('PUBLIC KEY', readFileSync(join(dir, f), 'utf8')));
    }
    return out;
  }

  issued(): IssuedRecord[] {
    const file = join(this.dir, 'issued.jsonl');
    if (!existsSync(file)) return [];
    return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as IssuedRecord);
  }

  /** Appended (and flushed by the OS write) before the certificate leaves the CA. */
  appendIssued(r: IssuedRecord): void {
    appendFileSync(join(this.dir, 'issued.jsonl'), JSON.stringify(r) + '\n', { mode: 0o600 });
  }

  private atomicWrite(name: string, text: string): string {
    mkdirSync(this.dir, { recursive: true });
    const path = join(this.dir, name);
    writeFileSync(`${path}.tmp`, text, { mode: 0o644 });
    renameSync(`${path}.tmp`, path);
    return path;
  }
}
