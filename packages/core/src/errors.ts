/**
 * The one registry of error codes. Every error the service raises carries a stable string
 * `code` from this table; the HTTP layer maps it to `status`, the CLI prints `code: message`.
 *
 * Two kinds only (as in Vault's keysutil): `user` errors are the caller's fault and change
 * nothing; `internal` errors are ours (module, token, integrity) and are logged and alarmed.
 * docs/errors.md lists every code once, with its status and kind; test/errors.test.ts fails when a
 * code is undocumented, a documented code is not here, or a row's status or kind differs.
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
  TOKEN_UNSUITABLE: { status: 503, kind: 'internal', text: 'the token fails a check of its profile (npm run ceremony -- probe)' },
  ALGORITHM_DISABLED: { status: 503, kind: 'internal', text: "the module's self-test disabled this optional algorithm" },
  // module state
  MODULE_ERROR: { status: 503, kind: 'internal', text: 'module is in the Error state' },
  MODULE_NOT_READY: { status: 503, kind: 'internal', text: 'module is not ready for service' },
  MODULE_INHIBITED: { status: 503, kind: 'internal', text: 'module is inhibited until an officer reinstates it' },
  HSM_ERROR: { status: 503, kind: 'internal', text: 'the cryptographic token reported an error' },
  HSM_OPERATION_REFUSED: { status: 500, kind: 'internal', text: "the token refused this operation's template or mechanism; the module stays in service" },
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
  RECOVERY_FAILED: { status: 503, kind: 'internal', text: 'reconcile found a rollback or an edit: module inhibited' },
  MAP_AHEAD: { status: 503, kind: 'internal', text: "database meter map is ahead of the modules' rings" },
  OFFICER_APPROVAL_REQUIRED: { status: 403, kind: 'user', text: 'the action needs a statement approved by M of the officers installed in the module token' },
  MODULE_IN_USE: { status: 503, kind: 'internal', text: 'another process holds the lease on this module' },
  CHECKPOINT_APPEND_FAILED: { status: 503, kind: 'internal', text: 'the command committed but its checkpoint is not in the ring yet: nothing released' },
  // caller input (used by the engine and the API in later layers)
  BAD_REQUEST: { status: 400, kind: 'user', text: 'request is invalid' },
  INVALID_AMOUNT: { status: 400, kind: 'user', text: 'amount must be a positive integer number of mills within limits (a purchase: whole units of the payment processor)' },
  // transaction engine
  UNKNOWN_METER: { status: 404, kind: 'user', text: 'no such meter' },
  METER_CLOSED: { status: 409, kind: 'user', text: 'meter is closed' },
  METER_NOT_SUSPENDED: { status: 409, kind: 'user', text: 'meter is not suspended' },
  METER_NOT_ACTIVE: { status: 409, kind: 'user', text: 'meter is not active (unassigned or suspended)' },
  METER_NOT_EMPTY: { status: 409, kind: 'user', text: 'meter still holds postage in its descending register' },
  // licensing (packages/server/src/licensing/, docs/licensing.md)
  METER_NOT_LICENSED: { status: 403, kind: 'user', text: 'the meter has no licence from the postal licensing authority (pending, refused or revoked): it cannot print' },
  ALREADY_LICENSED: { status: 409, kind: 'user', text: 'the meter is already licensed' },
  LICENCE_REVOKED: { status: 409, kind: 'user', text: "the meter's licence was revoked: it is not licensed again" },
  INSUFFICIENT_FUNDS: { status: 409, kind: 'user', text: 'descending register is lower than the amount' },
  MAX_DR_EXCEEDED: { status: 409, kind: 'user', text: "amount would take the descending register past the meter's maximum" },
  SPOILAGE_LIMIT: { status: 409, kind: 'user', text: 'refund total would exceed the spoilage limit of the ascending register' },
  UNKNOWN_INDICIUM: { status: 404, kind: 'user', text: 'no such indicium for this meter' },
  POOL_EXHAUSTED: { status: 409, kind: 'user', text: "the vendor's postage pool holds less than the amount" },
  POOL_INCONSISTENT: { status: 500, kind: 'internal', text: "the pool row's registers cannot seed the master PSD (more available than bought)" },
  POOL_PURCHASE_CONFLICT: { status: 409, kind: 'user', text: "the post's reference was already entered with another amount" },
  NO_MODULE: { status: 503, kind: 'internal', text: 'no healthy cryptographic module is available' },
  NO_METER_AVAILABLE: { status: 503, kind: 'internal', text: 'no certified, unassigned meter is available (MeterGen pool empty)' },
  PACKAGE_STALE: { status: 500, kind: 'internal', text: 'sealed package is not the current one (meter map proof or newest journal record)' },
  DB_NEWER_THAN_CODE: { status: 500, kind: 'internal', text: 'database schema is newer than this code' },
  DATABASE_UNAVAILABLE: { status: 503, kind: 'internal', text: 'the database is unavailable (restarting or unreachable); retry the request' },
  SHARD_LOST: { status: 503, kind: 'internal', text: "this process no longer serves the meter's shard: another process took it over; retry the request" },
  SHARD_UNAVAILABLE: { status: 503, kind: 'internal', text: "no process serves the meter's shard now; retry the request" },
  UNKNOWN_MODULE: { status: 400, kind: 'user', text: 'no module with that serial in this service' },
  REGISTRATION_UNKNOWN: { status: 403, kind: 'user', text: 'no open registration for this meter with that registration token' },
  CRYPTO_INPUT_INVALID: { status: 400, kind: 'user', text: 'a ciphertext, MAC, key or password in the request does not fit the cryptographic operation' },
  CLIENT_SECRET_INVALID: { status: 400, kind: 'user', text: 'an encrypted client secret does not decrypt under the module transport key' },
  // mailer protocol (docs/protocol.md)
  ALREADY_REGISTERED: { status: 409, kind: 'user', text: 'meter is already registered' },
  NOT_REGISTERED: { status: 409, kind: 'user', text: 'meter has not completed registration' },
  BAD_MAC: { status: 401, kind: 'user', text: 'request HMAC does not verify' },
  STALE_CHALLENGE: { status: 409, kind: 'user', text: 'request does not carry the last challenge (replayed or out of order)' },
  REGISTER_MISMATCH: { status: 409, kind: 'user', text: "client's register copy differs from the meter's" },
  USER_SECRETS_EXPIRED: { status: 403, kind: 'user', text: "the meter's HMK and password have expired: re-key first (POST /v1/rekey)" },
  WRONG_PASSWORD: { status: 401, kind: 'user', text: 'password does not match' },
  SESSION_NOT_FOUND: { status: 404, kind: 'user', text: 'no such session' },
  SESSION_ENDED: { status: 401, kind: 'user', text: 'session ended (closed, missed heartbeat or bad dynamic password)' },
  BAD_DYNAMIC_PASSWORD: { status: 401, kind: 'user', text: 'dynamic password does not verify; the session is ended' },
  POSTAGE_MISMATCH: { status: 400, kind: 'user', text: 'postage differs from the rate table price of the piece' },
  // indicium (packages/core/src/indicium/)
  INDICIUM_FIELD_INVALID: { status: 400, kind: 'user', text: 'an indicium field is out of range or badly formed' },
  INDICIUM_MALFORMED: { status: 400, kind: 'user', text: 'indicium bytes do not decode' },
  LABEL_INVALID: { status: 400, kind: 'user', text: 'label content is invalid' },
  BARCODE_NOT_FOUND: { status: 400, kind: 'user', text: 'no DataMatrix symbol could be read from the image' },
  DECODER_UNAVAILABLE: { status: 503, kind: 'internal', text: 'the DataMatrix decoder (dmtxread) is not installed' },
  // PKI: MeterGen, the dev/test postal CA, rollover (packages/server/src/pki/, docs/pki.md)
  CA_REQUEST_REFUSED: { status: 403, kind: 'user', text: 'the CA refused the certificate request' },
  CA_UNAVAILABLE: { status: 502, kind: 'internal', text: 'the CA could not be reached or answered with an error' },
  CERT_INVALID: { status: 502, kind: 'internal', text: 'certificate does not verify against the trust anchor or breaks the profile' },
  CERT_KEY_MISMATCH: { status: 502, kind: 'internal', text: "certificate's public key is not the meter's key" },
  ROLLOVER_REJECTED: { status: 400, kind: 'user', text: 'new CA certificate is not signed by the current CA key or does not match the published key hash' },
  METER_ALREADY_CERTIFIED: { status: 409, kind: 'user', text: 'meter is already certified (renew its key instead)' },
  METER_NOT_CERTIFIED: { status: 409, kind: 'user', text: 'meter has no certified, unexpired indicium key' },
  CSR_SIGN_REFUSED: { status: 400, kind: 'user', text: 'a meter key signs only a certification request for itself while uncertified' },
  RENEWAL_NOT_FOUND: { status: 409, kind: 'user', text: 'no such pending key renewal' },
  // HTTP API (packages/server/src/api/)
  NOT_FOUND: { status: 404, kind: 'user', text: 'no such resource or route' },
  BAD_JSON: { status: 400, kind: 'user', text: 'request body is not well-formed JSON' },
  BODY_TOO_LARGE: { status: 413, kind: 'user', text: 'request body exceeds the size limit' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, kind: 'user', text: 'request body must be application/json (UTF-8)' },
  VALIDATION_FAILED: { status: 400, kind: 'user', text: 'request does not match the schema' },
  TEXT_INVALID: { status: 400, kind: 'user', text: 'a text field holds control characters (NUL, line breaks, ...) or is not valid Unicode' },
  HEADERS_TOO_LARGE: { status: 431, kind: 'user', text: 'request headers exceed the size limit' },
  CONTENT_ENCODING_UNSUPPORTED: { status: 415, kind: 'user', text: 'request bodies are not compressed: no Content-Encoding other than identity' },
  IDEMPOTENCY_KEY_REQUIRED: { status: 400, kind: 'user', text: 'an Idempotency-Key header of 1 to 128 printable ASCII characters is required' },
  IDEMPOTENCY_KEY_REUSED: { status: 409, kind: 'user', text: 'this Idempotency-Key was already used with a different request' },
  IDEMPOTENCY_IN_PROGRESS: { status: 409, kind: 'user', text: 'a request with this Idempotency-Key is still being processed' },
  RATE_LIMITED: { status: 429, kind: 'user', text: 'too many requests; retry after the time in Retry-After' },
  INTERNAL: { status: 500, kind: 'internal', text: 'internal error' },
  // credentials of postal verifiers and operators (packages/server/src/api/credentials.ts)
  VERIFIER_UNKNOWN: { status: 401, kind: 'user', text: 'the postal verifier credential is unknown or revoked' },
  OPERATOR_UNKNOWN: { status: 401, kind: 'user', text: 'the operator credential is missing, unknown or revoked' },
  // payments (packages/server/src/payments/)
  PAYMENT_DECLINED: { status: 402, kind: 'user', text: 'the payment was declined' },
  PAYMENT_LINK_FAILED: { status: 502, kind: 'internal', text: 'the payment processor could not be reached (after 3 attempts)' },
  // postage rates (packages/core/src/rates/)
  RATE_NOT_FOUND: { status: 400, kind: 'user', text: 'no rate for that mail class, weight and zone' },
  // backup and point-in-time recovery (packages/server/src/ops/backup.ts, packages/server/src/ops/restore.ts, docs/operations.md)
  PG_TOOLS_MISSING: { status: 500, kind: 'internal', text: "PostgreSQL client tools of the server's major version are not installed" },
  WAL_ARCHIVE_OFF: { status: 500, kind: 'internal', text: 'the database does not archive its WAL: a base backup could not be rolled forward' },
  BACKUP_FAILED: { status: 500, kind: 'internal', text: 'the base backup failed or does not verify' },
  NO_BACKUP: { status: 400, kind: 'user', text: 'no verified base backup ends before the requested recovery time' },
  DATABASE_RUNNING: { status: 409, kind: 'user', text: 'the database to restore over is running: stop the service first' },
  RESTORE_FAILED: { status: 500, kind: 'internal', text: 'recovery from the base backup and the WAL archive failed' },
  // the journal export and its replay (packages/server/src/ledger/journal-export.ts, journal-replay.ts, docs/journal-export.md)
  JOURNAL_EXPORT_BROKEN: { status: 500, kind: 'internal', text: 'the journal export does not verify (a file edited, missing, reordered or not sealed by a module)' },
  JOURNAL_REPLAY_FAILED: { status: 500, kind: 'internal', text: 'the journal export cannot be replayed onto this database' },
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
