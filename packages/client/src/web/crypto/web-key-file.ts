import { vbiError } from '@vbi/core/errors';
import { DEFAULT_KDF, headerAad, IV_BYTES, KdfParams, KeyFileEnvelope, parseEnvelope, SALT_BYTES, TAG_BYTES } from '../../client/key-file';
import { bytes, randomBytes } from './web-crypto';
import { scrypt } from './scrypt';

/**
 * The CLI's key file (packages/client/src/client/key-file.ts: scrypt, AES-256-GCM, header as AAD) read and
 * written in the browser, byte-compatible in both directions. The derived key is held as a
 * non-extractable CryptoKey; `text` is what is saved in the browser and exported as key.json.
 */
export class WebKeyFile<T> {
  private constructor(private current: T, private readonly key: CryptoKey, private readonly kdf: KdfParams, private readonly salt: Buffer, private currentText: string) {}

  /** A new key file for `state` under `password`. */
  static async create<T>(req: { password: string; state: T; kdf?: KdfParams }): Promise<WebKeyFile<T>> {
    const kdf = req.kdf ?? DEFAULT_KDF;
    const salt = randomBytes(SALT_BYTES);
    const key = await deriveKey(req.password, salt, kdf);
    const file = new WebKeyFile<T>(req.state, key, kdf, salt, '');
    file.currentText = await file.seal(req.state);
    return file;
  }

  /** Opens a key file's text (`name` for messages): BAD_REQUEST when malformed, WRONG_PASSWORD when it does not decrypt. */
  static async open<T>(req: { text: string; password: string; name: string }): Promise<WebKeyFile<T>> {
    const e = parseEnvelope(req.text, req.name);
    const salt = Buffer.from(e.salt, 'base64');
    const key = await deriveKey(req.password, salt, e.kdf);
    let plain: ArrayBuffer;
    try {
      plain = await globalThis.crypto.subtle.decrypt(
        { name: 'AES-GCM', iv: bytes(Buffer.from(e.iv, 'base64')), additionalData: bytes(headerAad(e)), tagLength: TAG_BYTES * 8 },
        key, bytes(Buffer.concat([Buffer.from(e.ciphertext, 'base64'), Buffer.from(e.tag, 'base64')])));
    } catch {
      throw vbiError('WRONG_PASSWORD', `wrong password for key file ${req.name} (or the file was modified)`);
    }
    const state = JSON.parse(Buffer.from(plain).toString('utf8')) as T;
    return new WebKeyFile<T>(state, key, e.kdf, salt, req.text);
  }

  /** The decrypted state (read-only; change it with save). */
  get state(): T {
    return this.current;
  }

  /** The encrypted file as the CLI writes it. */
  get text(): string {
    return this.currentText;
  }

  /** Encrypts `state` under the same key with a fresh IV; returns the new text. */
  async save(state: T): Promise<string> {
    this.currentText = await this.seal(state);
    this.current = state;
    return this.currentText;
  }

  private async seal(state: T): Promise<string> {
    const iv = randomBytes(IV_BYTES);
    const header = { format: 'vbi-key-file' as const, version: 1 as const, cipher: 'aes-256-gcm' as const, kdf: this.kdf, salt: this.salt.toString('base64') };
    const sealed = Buffer.from(await globalThis.crypto.subtle.encrypt(
      { name: 'AES-GCM', iv: bytes(iv), additionalData: bytes(headerAad(header)), tagLength: TAG_BYTES * 8 },
      this.key, bytes(Buffer.from(JSON.stringify(state), 'utf8'))));
    const envelope: KeyFileEnvelope = {
      ...header, iv: iv.toString('base64'),
      ciphertext: sealed.subarray(0, sealed.length - TAG_BYTES).toString('base64'), tag: sealed.subarray(sealed.length - TAG_BYTES).toString('base64'),
    };
    return `${JSON.stringify(envelope, null, 2)}\n`;
  }
}

async function deriveKey(password: string, salt: Buffer, kdf: KdfParams): Promise<CryptoKey> {
  const raw = await scrypt({ password: password.normalize('NFKC'), salt, N: kdf.N, r: kdf.r, p: kdf.p, keyLength: kdf.keyLength });
  try {
    return await globalThis.crypto.subtle.importKey('raw', bytes(raw), { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
  } finally {
    raw.fill(0);
  }
}
