import * as pkcs11 from 'pkcs11js';
import { VbiError, vbiError } from '../errors';

/** The CKR_ code of a pkcs11js/graphene error, or undefined for anything else. */
export function ckr(e: unknown): number | undefined {
  const code = (e as { code?: unknown })?.code;
  return e instanceof Error && typeof code === 'number' ? code : undefined;
}

/** Errors after which a fresh session, a new login and fresh object handles may succeed. */
const RECOVERABLE = new Set<number>([
  pkcs11.CKR_SESSION_HANDLE_INVALID,
  pkcs11.CKR_SESSION_CLOSED,
  pkcs11.CKR_USER_NOT_LOGGED_IN,
  pkcs11.CKR_OBJECT_HANDLE_INVALID,
  pkcs11.CKR_KEY_HANDLE_INVALID,
  pkcs11.CKR_WRAPPING_KEY_HANDLE_INVALID,
  pkcs11.CKR_UNWRAPPING_KEY_HANDLE_INVALID,
  pkcs11.CKR_OPERATION_ACTIVE,
]);

/** Errors that mean the token itself is gone or broken: take the module out of service. */
const DEVICE = new Set<number>([
  pkcs11.CKR_DEVICE_ERROR,
  pkcs11.CKR_DEVICE_REMOVED,
  pkcs11.CKR_TOKEN_NOT_PRESENT,
  pkcs11.CKR_TOKEN_NOT_RECOGNIZED,
  pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED,
  pkcs11.CKR_DEVICE_MEMORY,
]);

export function isRecoverable(e: unknown): boolean {
  const c = ckr(e);
  return c !== undefined && RECOVERABLE.has(c);
}

export function isDeviceError(e: unknown): boolean {
  const c = ckr(e);
  return c !== undefined && DEVICE.has(c);
}

/** Turns a raw PKCS#11 error into a registry error; registry errors pass through. */
export function toVbiError(e: unknown, what: string): VbiError {
  if (e instanceof VbiError) return e;
  const c = ckr(e);
  if (c === pkcs11.CKR_PIN_INCORRECT || c === pkcs11.CKR_PIN_LEN_RANGE) return vbiError('PIN_INCORRECT', `${what}: PIN rejected`);
  const msg = e instanceof Error ? e.message : String(e);
  return vbiError('HSM_ERROR', `${what}: ${msg}`, c !== undefined ? { ckr: `0x${c.toString(16)}` } : undefined);
}
