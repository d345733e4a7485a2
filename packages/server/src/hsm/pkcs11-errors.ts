import * as pkcs11 from 'pkcs11js';
import { VbiError, vbiError } from '@vbi/core/errors';

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

/**
 * Errors caused by the data an operation was given — a caller's ciphertext, MAC, wrapped key or
 * length — not by the token: the request's fault (400 CRYPTO_INPUT_INVALID), never a reason to
 * take the module out of service. The service checks lengths before the token sees them; these
 * are the codes a token still answers for input it dislikes.
 */
const INPUT = new Set<number>([
  pkcs11.CKR_ARGUMENTS_BAD,
  pkcs11.CKR_DATA_INVALID,
  pkcs11.CKR_DATA_LEN_RANGE,
  pkcs11.CKR_ENCRYPTED_DATA_INVALID,
  pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE,
  pkcs11.CKR_SIGNATURE_INVALID,
  pkcs11.CKR_SIGNATURE_LEN_RANGE,
  pkcs11.CKR_WRAPPED_KEY_INVALID,
  pkcs11.CKR_WRAPPED_KEY_LEN_RANGE,
  pkcs11.CKR_MECHANISM_PARAM_INVALID,
  pkcs11.CKR_KEY_SIZE_RANGE,
]);

/**
 * Errors about how one operation was asked — its template, mechanism or key usage — that the
 * token answers the same way every time: that request fails (HSM_OPERATION_REFUSED), the token
 * is fine, and the module stays in rotation without a health check.
 */
const REQUEST = new Set<number>([
  pkcs11.CKR_ATTRIBUTE_READ_ONLY,
  pkcs11.CKR_ATTRIBUTE_TYPE_INVALID,
  pkcs11.CKR_ATTRIBUTE_VALUE_INVALID,
  pkcs11.CKR_TEMPLATE_INCOMPLETE,
  pkcs11.CKR_TEMPLATE_INCONSISTENT,
  pkcs11.CKR_MECHANISM_INVALID,
  pkcs11.CKR_KEY_TYPE_INCONSISTENT,
  pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED,
  pkcs11.CKR_KEY_NOT_WRAPPABLE,
  pkcs11.CKR_KEY_UNEXTRACTABLE,
  pkcs11.CKR_WRAPPING_KEY_TYPE_INCONSISTENT,
  pkcs11.CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT,
  pkcs11.CKR_DOMAIN_PARAMS_INVALID,
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
  // no token wording in a user error: it may describe keys or mechanisms
  if (c !== undefined && INPUT.has(c)) return vbiError('CRYPTO_INPUT_INVALID', `${what}: the data given does not fit the operation`);
  if (c !== undefined && REQUEST.has(c)) {
    return vbiError('HSM_OPERATION_REFUSED', `${what}: ${e instanceof Error ? e.message : String(e)}`, { ckr: `0x${c.toString(16)}` });
  }
  const msg = e instanceof Error ? e.message : String(e);
  return vbiError('HSM_ERROR', `${what}: ${msg}`, c !== undefined ? { ckr: `0x${c.toString(16)}` } : undefined);
}
