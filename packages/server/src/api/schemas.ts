import { bodySchema, JsonSchema, meterIdSchema, millsSchema, objectSchema } from './validation';
import { Operation } from '@vbi/core/protocol/messages';
import type {
  BalanceBody, CorrectionBody, HistoryBody, Payment, PrintBody, PrintItemBody, PrintRate, PurchaseBody, RedeliverBody, RefundBody, RekeyBody,
  SessionCloseBody, SessionOpenBody, SettleBody,
} from '@vbi/core/protocol/bodies';

/** JSON Schemas of the mailer protocol's messages (docs/protocol.md), used for validation and OpenAPI. */

export const base64Schema = (maxLength = 4096): JsonSchema => ({ type: 'string', pattern: '^[A-Za-z0-9+/]*={0,2}$', maxLength });

/**
 * Base64 of exactly `bytes` bytes (padded): MACs and dynamic passwords (HMAC-SHA256, 32 bytes),
 * challenges (16). Checked here so a wrong length never reaches a token.
 */
export function base64Bytes(bytes: number): JsonSchema {
  const chars = 4 * Math.ceil(bytes / 3);
  const pad = (3 - (bytes % 3)) % 3;
  return { type: 'string', pattern: `^[A-Za-z0-9+/]{${chars - pad}}={${pad}}$`, minLength: chars, maxLength: chars, description: `${bytes} bytes, base64` };
}

/** RSA-OAEP ciphertext under a module transport key: 2048 to 4096-bit moduli (the module checks its own). */
const rsaCiphertext: JsonSchema = { ...base64Schema(684), minLength: 344, description: 'RSA-OAEP ciphertext under the module transport key, base64' };

/** Database ids: positive integers that fit a bigint and a JavaScript number. */
export const idSchema = { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER } as const;
const clientTime = { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER };
const mac = base64Bytes(32);
/** Token serial numbers: 1 to 32 printable ASCII characters without spaces (PKCS#11 serialNumber). */
const moduleSerial = { type: 'string', pattern: '^[\\x21-\\x7e]{1,32}$' };
const counter = { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER };
const registers = objectSchema({ ascending: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER }, descending: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER } });
const zip = { type: 'string', pattern: '^(\\d{5}|\\d{9}|\\d{11})?$' };

/** The operational envelope around an operation's body. */
export function envelopeSchema(op: Operation, body: JsonSchema): JsonSchema {
  return objectSchema({
    meterId: meterIdSchema, op: { type: 'string', const: op }, challenge: base64Bytes(16), registers, body, mac,
  });
}

export const registrationSchema = objectSchema({
  name: { type: 'string', minLength: 1, maxLength: 200 },
  licensingZip: { type: 'string', pattern: '^\\d{5}$' },
  returnAddress: { type: 'array', items: { type: 'string', minLength: 1, maxLength: 40 }, minItems: 1, maxItems: 4 },
});

export const challengeSchema = objectSchema({ moduleSerial, clientNonce: base64Schema(100) });

export const completeSchema = objectSchema({
  moduleSerial, registrationToken: { type: 'string', pattern: '^[0-9a-f]{32}$' },
  encryptedHmk: rsaCiphertext, encryptedPasswordSecret: rsaCiphertext,
});

export const printItemSchema = bodySchema<PrintItemBody>()({
  counter, clientTime, destinationZip: zip, postage: millsSchema,
  rate: bodySchema<PrintRate>()({ mailClass: { type: 'string', maxLength: 40 }, weightOz: { type: 'number', exclusiveMinimum: 0, maximum: 1120 }, zone: { type: 'integer', minimum: 1, maximum: 9 } }, ['mailClass', 'weightOz']),
  itemType: { type: 'string', enum: ['postage', 'ticket', 'coupon', 'voucher'] },
  dateOfMailing: { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}$' },
  dynamicPassword: mac,
}, ['counter', 'clientTime', 'destinationZip', 'postage', 'dynamicPassword']);

const sessionId = { type: 'string', pattern: '^[0-9a-f]{32}$' };

export const bodies = {
  balance: bodySchema<BalanceBody>()({}, []),
  history: bodySchema<HistoryBody>()({ limit: { type: 'integer', minimum: 1, maximum: 500 } }, []),
  purchase: bodySchema<PurchaseBody>()({
    amount: millsSchema,
    payment: bodySchema<Payment>()({ kind: { type: 'string', enum: ['card', 'ach', 'check'] }, token: { type: 'string', minLength: 1, maxLength: 100 } }, ['kind', 'token']),
  }, ['amount', 'payment']),
  settle: bodySchema<SettleBody>()({ paymentId: idSchema }, ['paymentId']),
  refund: bodySchema<RefundBody>()({ kind: { type: 'string', enum: ['partial', 'full'] }, amount: millsSchema, reason: { type: 'string', maxLength: 500 } }, ['kind', 'reason']),
  sessionOpen: bodySchema<SessionOpenBody>()({ moduleSerial, encryptedPasswordSecret: rsaCiphertext, encryptedSessionKey: rsaCiphertext }, ['moduleSerial', 'encryptedPasswordSecret', 'encryptedSessionKey']),
  sessionClose: bodySchema<SessionCloseBody>()({ sessionId }, ['sessionId']),
  rekey: bodySchema<RekeyBody>()({
    moduleSerial, encryptedPasswordSecret: rsaCiphertext, encryptedNewHmk: rsaCiphertext, encryptedNewPasswordSecret: rsaCiphertext,
    proofNonce: { ...base64Schema(88), minLength: 24 },
  }, ['moduleSerial', 'encryptedPasswordSecret', 'encryptedNewHmk', 'encryptedNewPasswordSecret', 'proofNonce']),
  print: bodySchema<PrintBody>()({ sessionId, items: { type: 'array', items: printItemSchema, minItems: 1, maxItems: 500 } }, ['sessionId', 'items']),
  correction: bodySchema<CorrectionBody>()({ sessionId, originalIndiciumId: idSchema, item: printItemSchema }, ['sessionId', 'originalIndiciumId', 'item']),
  redeliver: bodySchema<RedeliverBody>()({
    sessionId, batchId: { type: 'string', pattern: '^[0-9a-f]{16}$' }, idempotencyKey: { type: 'string', pattern: '^[\\x20-\\x7e]{1,128}$' },
    fromSequence: idSchema, toSequence: idSchema,
  }, ['sessionId']),
};

/** The resync exchange (docs/protocol.md 6): a fresh nonce instead of the challenge. */
export const resyncSchema = objectSchema({
  meterId: meterIdSchema, clientNonce: { ...base64Schema(88), minLength: 24 }, clientTime,
  afterSequence: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER }, mac,
});

export const heartbeatSchema = objectSchema({ meterId: meterIdSchema, counter, clientTime, dynamicPassword: mac });

export const verifySchema = objectSchema({ indicium: base64Schema(2048), location: { type: 'string', maxLength: 100 }, record: { type: 'boolean' } }, ['indicium']);

/** Responses are documented loosely: their exact content is docs/protocol.md. */
export const anyObject: JsonSchema = { type: 'object' };
