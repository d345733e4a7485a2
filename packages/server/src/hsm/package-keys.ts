import { randomBytes } from 'node:crypto';
import * as pkcs11 from 'pkcs11js';
import { vbiError } from '@vbi/core/errors';
import { aesGcm, des3Cbc, DES3_IV_BYTES, GCM_IV_BYTES, macMechanism } from './mechanisms';
import { ckr } from './pkcs11-errors';
import * as ops from './async-ops';
import type { ModuleLifecycle } from './module-lifecycle';

/** Package sealing and opening: the secret fields under the package encryption key, the package MAC. */

export function encryptSecrets(m: ModuleLifecycle, req: { plaintext: Buffer; aad: Buffer }): Promise<Buffer> {
  return m.run('encrypt package secrets', async (s, k) => {
    if (m.suite === 'aes') {
      const iv = randomBytes(GCM_IV_BYTES);
      const ct = await ops.encrypt(s, aesGcm(iv, req.aad), k.enc, req.plaintext);
      return Buffer.concat([iv, ct]);
    }
    // 3DES-CBC has no AAD: the package MAC binds the ciphertext to the public fields instead.
    const iv = randomBytes(DES3_IV_BYTES);
    const ct = await ops.encrypt(s, des3Cbc(iv), k.enc, req.plaintext);
    return Buffer.concat([iv, ct]);
  });
}

export function decryptSecrets(m: ModuleLifecycle, req: { ciphertext: Buffer; aad: Buffer }): Promise<Buffer> {
  return m.run('decrypt package secrets', async (s, k) => {
    const ivLen = m.suite === 'aes' ? GCM_IV_BYTES : DES3_IV_BYTES;
    if (req.ciphertext.length <= ivLen) throw vbiError('PACKAGE_DECRYPT_FAILED', 'secret section too short');
    const iv = req.ciphertext.subarray(0, ivLen);
    const body = req.ciphertext.subarray(ivLen);
    const mech = m.suite === 'aes' ? aesGcm(Buffer.from(iv), req.aad) : des3Cbc(Buffer.from(iv));
    try {
      return await ops.decrypt(s, mech, k.enc, Buffer.from(body));
    } catch (e) {
      const c = ckr(e);
      if (c === pkcs11.CKR_ENCRYPTED_DATA_INVALID || c === pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE) {
        throw vbiError('PACKAGE_DECRYPT_FAILED', 'secret section does not decrypt');
      }
      throw e;
    }
  });
}

export function mac(m: ModuleLifecycle, data: Buffer): Promise<Buffer> {
  return m.run('mac', (s, k) => ops.sign(s, macMechanism(m.suite), k.mac, data));
}

export function verifyMac(m: ModuleLifecycle, data: Buffer, macValue: Buffer): Promise<boolean> {
  return m.run('verify mac', (s, k) => ops.verify(s, macMechanism(m.suite), k.mac, data, macValue));
}
