import { createCipheriv, createDecipheriv, randomBytes, scrypt as scryptCb, ScryptOptions } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { dirname } from 'node:path';
import { vbiError } from '@vbi/core/errors';
import { canonicalJson } from '@vbi/core/protocol/canonical-json';

/**
 * The client's key file: one JSON document (the client state: meter id, HMK, last challenge,
 * register copy, ...) encrypted under the user's password.
 *
 *   key = scrypt(password NFKC, salt (16 random bytes), N = 2^15, r = 8, p = 1, 32 bytes)
 *   ciphertext || tag = AES-256-GCM(key, iv (12 random bytes), plaintext = UTF-8 JSON, aad)
 *   aad = canonicalJson({ format, version, cipher, kdf, salt })
 *
 * Persisted format: the envelope below is what sits on the mailer's disk. Never change a
 * name or the AAD; a new layout takes version 2 and a new branch in `decryptEnvelope`.
 * The header is bound as AAD, so editing the KDF parameters or the salt is refused like a
 * changed ciphertext. Files are written atomically (temporary file, fsync, rename) with
 * mode 0600; the derived key is kept in memory for later saves (fresh IV each time).
 */
export interface KeyFileEnvelope {
  format: 'vbi-key-file';
  version: 1;
  cipher: 'aes-256-gcm';
  kdf: KdfParams;
  /** base64, 16 bytes. */
  salt: string;
  /** base64, 12 bytes. */
  iv: string;
  /** base64. */
  ciphertext: string;
  /** base64, 16 bytes. */
  tag: string;
}

/** scrypt parameters as stored in the envelope. */
export interface KdfParams {
  name: 'scrypt';
  N: number;
  r: number;
  p: number;
  keyLength: 32;
}

/** What new key files use: N = 2^15 (about 32 MiB and 0.1 s per derivation), r = 8, p = 1. */
export const DEFAULT_KDF: KdfParams = { name: 'scrypt', N: 1 << 15, r: 8, p: 1, keyLength: 32 };
export const SALT_BYTES = 16;
export const IV_BYTES = 12;
export const TAG_BYTES = 16;
/** Bounds for parameters read from disk: a tampered N must not make us allocate gigabytes. */
const MAX_LOG2_N = 20;
const MAX_KDF_MEMORY = 1 << 30;

/** An open key file: the decrypted state and the key to save new versions of it. */
export class KeyFile<T> {
  private constructor(
    readonly path: string,
    private current: T,
    private key: Buffer,
    private readonly kdf: KdfParams,
    private salt: Buffer,
  ) {}

  /**
   * Creates a new key file holding `state`. Refuses to replace an existing file
   * (BAD_REQUEST): that file may hold the only copy of another meter's HMK.
   */
  static async create<T>(req: { path: string; password: string; state: T; kdf?: KdfParams }): Promise<KeyFile<T>> {
    const kdf = req.kdf ?? DEFAULT_KDF;
    const salt = randomBytes(SALT_BYTES);
    const key = await deriveKey(req.password, salt, kdf);
    const file = new KeyFile<T>(req.path, req.state, key, kdf, salt);
    await writeAtomic(req.path, file.envelope(req.state), { replace: false });
    return file;
  }

  /** Opens and decrypts a key file. WRONG_PASSWORD for a wrong password or a modified file. */
  static async open<T>(req: { path: string; password: string }): Promise<KeyFile<T>> {
    let text: string;
    try {
      text = await fs.readFile(req.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw vbiError('NOT_REGISTERED', `no key file at ${req.path} (run vbi register first)`);
      throw e;
    }
    const envelope = parseEnvelope(text, req.path);
    const salt = Buffer.from(envelope.salt, 'base64');
    const key = await deriveKey(req.password, salt, envelope.kdf);
    const state = JSON.parse(decryptEnvelope(envelope, key, req.path).toString('utf8')) as T;
    return new KeyFile<T>(req.path, state, key, envelope.kdf, salt);
  }

  /** The decrypted state (treat as read-only; change it with save). */
  get state(): T {
    return this.current;
  }

  /** Encrypts `state` under the same key with a fresh IV and replaces the file atomically. */
  async save(state: T): Promise<void> {
    await writeAtomic(this.path, this.envelope(state), { replace: true });
    this.current = state;
  }

  /**
   * Encrypts `state` under a new password (fresh salt and key) and replaces the file atomically:
   * the old password no longer opens it.
   */
  async saveUnderPassword(password: string, state: T): Promise<void> {
    const salt = randomBytes(SALT_BYTES);
    const key = await deriveKey(password, salt, this.kdf);
    const previous = { key: this.key, salt: this.salt };
    this.key = key;
    this.salt = salt;
    try {
      await this.save(state);
    } catch (e) {
      Object.assign(this, previous);
      throw e;
    }
  }

  private envelope(state: T): KeyFileEnvelope {
    const iv = randomBytes(IV_BYTES);
    const header = { format: 'vbi-key-file' as const, version: 1 as const, cipher: 'aes-256-gcm' as const, kdf: this.kdf, salt: this.salt.toString('base64') };
    const cipher = createCipheriv('aes-256-gcm', this.key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(headerAad(header));
    const ciphertext = Buffer.concat([cipher.update(Buffer.from(JSON.stringify(state), 'utf8')), cipher.final()]);
    return { ...header, iv: iv.toString('base64'), ciphertext: ciphertext.toString('base64'), tag: cipher.getAuthTag().toString('base64') };
  }
}

export function headerAad(h: Pick<KeyFileEnvelope, 'format' | 'version' | 'cipher' | 'kdf' | 'salt'>): Buffer {
  return Buffer.from(canonicalJson({ format: h.format, version: h.version, cipher: h.cipher, kdf: h.kdf, salt: h.salt }), 'utf8');
}

function deriveKey(password: string, salt: Buffer, kdf: KdfParams): Promise<Buffer> {
  const opts: ScryptOptions = { N: kdf.N, r: kdf.r, p: kdf.p, maxmem: 256 * kdf.N * kdf.r + (1 << 20) };
  return new Promise((resolve, reject) => {
    scryptCb(password.normalize('NFKC'), salt, kdf.keyLength, opts, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

function decryptEnvelope(e: KeyFileEnvelope, key: Buffer, path: string): Buffer {
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(e.iv, 'base64'), { authTagLength: TAG_BYTES });
    decipher.setAAD(headerAad(e));
    decipher.setAuthTag(Buffer.from(e.tag, 'base64'));
    return Buffer.concat([decipher.update(Buffer.from(e.ciphertext, 'base64')), decipher.final()]);
  } catch {
    throw vbiError('WRONG_PASSWORD', `wrong password for key file ${path} (or the file was modified)`);
  }
}

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Structural checks before any key derivation: a corrupt file is BAD_REQUEST, not a password problem. */
export function parseEnvelope(text: string, path: string): KeyFileEnvelope {
  const bad = (why: string): never => {
    throw vbiError('BAD_REQUEST', `${path} is not a usable VBI key file: ${why}`, { field: 'keyFile' });
  };
  let e: Partial<KeyFileEnvelope>;
  try {
    e = JSON.parse(text) as Partial<KeyFileEnvelope>;
  } catch {
    return bad('not JSON');
  }
  if (!e || typeof e !== 'object' || e.format !== 'vbi-key-file') return bad('unknown format');
  if (e.version !== 1) return bad(`unsupported version ${String(e.version)}`);
  if (e.cipher !== 'aes-256-gcm') return bad('unsupported cipher');
  const k = e.kdf;
  const log2N = k && typeof k.N === 'number' ? Math.log2(k.N) : NaN;
  if (!k || k.name !== 'scrypt' || k.keyLength !== 32 || !Number.isInteger(log2N) || log2N < 14 || log2N > MAX_LOG2_N
    || !Number.isInteger(k.r) || k.r < 1 || k.r > 32 || !Number.isInteger(k.p) || k.p < 1 || k.p > 16
    || 128 * k.N * k.r > MAX_KDF_MEMORY) {
    return bad('unsupported key derivation parameters');
  }
  for (const [field, len] of [['salt', SALT_BYTES], ['iv', IV_BYTES], ['tag', TAG_BYTES], ['ciphertext', 0]] as const) {
    const v = e[field];
    if (typeof v !== 'string' || !B64.test(v)) return bad(`${field} is not base64`);
    if (len && Buffer.from(v, 'base64').length !== len) return bad(`${field} must be ${len} bytes`);
  }
  return e as KeyFileEnvelope;
}

/**
 * Writes `content` as JSON to a temporary file next to `path` (mode 0600, fsync) and moves it
 * into place: a crash leaves either the old or the new file, never a torn one. With
 * `replace: false` the move is a hard link, which fails when `path` exists.
 */
async function writeAtomic(path: string, content: KeyFileEnvelope, opts: { replace: boolean }): Promise<void> {
  const dir = dirname(path);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await fs.open(tmp, 'wx', 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(content, null, 2)}\n`, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    if (opts.replace) {
      await fs.rename(tmp, path);
    } else {
      try {
        await fs.link(tmp, path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw vbiError('BAD_REQUEST', `key file ${path} already exists; refusing to overwrite it`, { field: 'keyFile' });
        throw e;
      }
    }
  } finally {
    await fs.rm(tmp, { force: true });
  }
  await syncDir(dir);
}

/** fsync of the directory so the rename itself is durable; not every platform allows it. */
async function syncDir(dir: string): Promise<void> {
  try {
    const h = await fs.open(dir, 'r');
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  } catch {
    // Windows and some file systems refuse fsync on a directory: the rename is still atomic.
  }
}
