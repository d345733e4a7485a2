import { PASSWORD_SECRET_KDF, passwordSecretSalt } from '@vbi/core/protocol/messages';
import { scrypt } from './scrypt';

/** The password secret of packages/core/src/protocol/messages.ts (passwordSecret), computed in the browser. */
export function webPasswordSecret(password: string, meterId: string): Promise<Buffer> {
  return scrypt({ password: password.normalize('NFKC'), salt: passwordSecretSalt(meterId), ...PASSWORD_SECRET_KDF });
}
