/**
 * The one registry of error codes. Every error the service raises carries a stable string
 * `code` from this table; the HTTP layer maps it to `status`, the CLI prints `code: message`.
 *
 * Two kinds only (as in Vault's keysutil): `user` errors are the caller's fault and change
 * nothing; `internal` errors are ours (module, token, integrity) and are logged and alarmed.
 * docs/errors.md lists every code; test/errors.test.ts fails when one is undocumented.
 */
export const ERROR_CODES = {
  // configuration and provisioning
  CONFIG_INVALID: { status: 500, kind: 'internal', text: 'configuration is invalid' },
  TOKEN_NOT_FOUND: { status: 503, kind: 'internal', text: 'no token with that label' },
  TOKEN_ALREADY_INITIALIZED: { status: 409, kind: 'user', text: 'token is already initialised (use --force)' },
  PIN_INCORRECT: { status: 401, kind: 'user', text: 'PIN rejected by the token' },
  KEY_MISSING: { status: 503, kind: 'internal', text: 'a module key is missing from the token' },
  KEY_EXISTS: { status: 409, kind: 'user', text: 'the token already holds a key with that label' },
  KEY_ATTRIBUTES_WEAK: { status: 503, kind: 'internal', text: 'a module key has attributes its template forbids' },
  KCV_MISMATCH: { status: 500, kind: 'internal', text: 'key check values of cloned keys differ' },
  // module state
  MODULE_ERROR: { status: 503, kind: 'internal', text: 'module is in the Error state' },
  MODULE_NOT_READY: { status: 503, kind: 'internal', text: 'module is not ready for service' },
  MODULE_INHIBITED: { status: 503, kind: 'internal', text: 'module is inhibited until an officer reinstates it' },
  HSM_ERROR: { status: 503, kind: 'internal', text: 'the cryptographic token reported an error' },
  // sealed packages
  PACKAGE_MALFORMED: { status: 500, kind: 'internal', text: 'sealed package does not decode' },
  PACKAGE_VERSION_UNSUPPORTED: { status: 500, kind: 'internal', text: 'sealed package version is not supported' },
  PACKAGE_MAC_INVALID: { status: 500, kind: 'internal', text: 'sealed package MAC does not verify' },
  PACKAGE_DECRYPT_FAILED: { status: 500, kind: 'internal', text: 'sealed package secrets do not decrypt' },
  PACKAGE_METER_MISMATCH: { status: 500, kind: 'internal', text: 'sealed package belongs to another meter' },
  PACKAGE_SUITE_MISMATCH: { status: 500, kind: 'internal', text: 'sealed package uses another cipher suite than this module' },
  // checkpoint ring
  CHECKPOINT_MALFORMED: { status: 500, kind: 'internal', text: 'checkpoint record does not decode' },
  CHECKPOINT_MAC_INVALID: { status: 500, kind: 'internal', text: 'checkpoint record MAC does not verify' },
  CHECKPOINT_MISMATCH: { status: 409, kind: 'internal', text: "database checkpoint differs from the module's newest ring entry" },
  RECOVERY_FAILED: { status: 503, kind: 'internal', text: 'auto-recovery refused: module inhibited' },
  // caller input (used by the engine and the API in later layers)
  BAD_REQUEST: { status: 400, kind: 'user', text: 'request is invalid' },
  INVALID_AMOUNT: { status: 400, kind: 'user', text: 'amount must be a positive integer number of mills within limits' },
  // transaction engine
  UNKNOWN_METER: { status: 404, kind: 'user', text: 'no such meter' },
  METER_CLOSED: { status: 409, kind: 'user', text: 'meter is closed' },
  METER_NOT_ACTIVE: { status: 409, kind: 'user', text: 'meter is not active (unassigned or suspended)' },
  METER_NOT_EMPTY: { status: 409, kind: 'user', text: 'meter still holds postage in its descending register' },
  INSUFFICIENT_FUNDS: { status: 409, kind: 'user', text: 'descending register is lower than the amount' },
  MAX_DR_EXCEEDED: { status: 409, kind: 'user', text: "amount would take the descending register past the meter's maximum" },
  SPOILAGE_LIMIT: { status: 409, kind: 'user', text: 'refund total would exceed the spoilage limit of the ascending register' },
  UNKNOWN_INDICIUM: { status: 404, kind: 'user', text: 'no such indicium for this meter' },
  POOL_EXHAUSTED: { status: 409, kind: 'user', text: "the vendor's postage pool holds less than the amount" },
  NO_MODULE: { status: 503, kind: 'internal', text: 'no healthy cryptographic module is available' },
  PACKAGE_STALE: { status: 500, kind: 'internal', text: "sealed package is not the one the meter's newest journal record names" },
  DB_NEWER_THAN_CODE: { status: 500, kind: 'internal', text: 'database schema is newer than this code' },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;
export type ErrorKind = 'user' | 'internal';

/** Base of every error the service raises on purpose. */
export class VbiError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly kind: ErrorKind;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message?: string, details?: Record<string, unknown>) {
    const entry = ERROR_CODES[code];
    super(message ?? entry.text);
    this.name = entry.kind === 'user' ? 'UserError' : 'InternalError';
    this.code = code;
    this.status = entry.status;
    this.kind = entry.kind;
    this.details = details;
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, ...(this.details ? { details: this.details } : {}) };
  }
}

/** The caller's fault: nothing changed, a 4xx answer. */
export class UserError extends VbiError {}
/** Our fault or the environment's (token, integrity): a 5xx answer, alarmed. */
export class InternalError extends VbiError {}

/** Builds the right subclass for a code. */
export function vbiError(code: ErrorCode, message?: string, details?: Record<string, unknown>): VbiError {
  return ERROR_CODES[code].kind === 'user'
    ? new UserError(code, message, details)
    : new InternalError(code, message, details);
}

export function isVbiError(e: unknown, code?: ErrorCode): e is VbiError {
  return e instanceof VbiError && (code === undefined || e.code === code);
}
