import { JsonSchema, meterIdSchema, millsSchema, objectSchema } from './validation';
import { Operation } from '../protocol/messages';

/** JSON Schemas of the mailer protocol's messages (docs/protocol.md), used for validation and OpenAPI. */

export const base64Schema = (maxLength = 4096): JsonSchema => ({ type: 'string', pattern: '^[A-Za-z0-9+/]*={0,2}$', maxLength });
const counter = { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER };
const registers = objectSchema({ ascending: { type: 'integer', minimum: 0 }, descending: { type: 'integer', minimum: 0 } });
const zip = { type: 'string', pattern: '^(\\d{5}|\\d{9}|\\d{11})?$' };

/** The operational envelope around an operation's body. */
export function envelopeSchema(op: Operation, body: JsonSchema): JsonSchema {
  return objectSchema({
    meterId: meterIdSchema, op: { type: 'string', const: op }, challenge: base64Schema(64), registers, body, mac: base64Schema(64),
  });
}

export const registrationSchema = objectSchema({
  name: { type: 'string', minLength: 1, maxLength: 200 },
  licensingZip: { type: 'string', pattern: '^\\d{5}$' },
  returnAddress: { type: 'array', items: { type: 'string', minLength: 1, maxLength: 40 }, minItems: 1, maxItems: 4 },
});

export const challengeSchema = objectSchema({ moduleSerial: { type: 'string', maxLength: 32 }, clientNonce: base64Schema(100) });

export const completeSchema = objectSchema({ moduleSerial: { type: 'string', maxLength: 32 }, encryptedHmk: base64Schema(1024), encryptedPasswordSecret: base64Schema(1024) });

export const printItemSchema = objectSchema({
  counter, clientTime: { type: 'integer', minimum: 0 }, destinationZip: zip, postage: millsSchema,
  rate: objectSchema({ mailClass: { type: 'string', maxLength: 40 }, weightOz: { type: 'number', exclusiveMinimum: 0, maximum: 1120 }, zone: { type: 'integer', minimum: 1, maximum: 9 } }, ['mailClass', 'weightOz']),
  itemType: { type: 'string', enum: ['postage', 'ticket', 'coupon', 'voucher'] },
  dateOfMailing: { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}$' },
  dynamicPassword: base64Schema(64),
}, ['counter', 'clientTime', 'destinationZip', 'postage', 'dynamicPassword']);

const sessionId = { type: 'string', pattern: '^[0-9a-f]{32}$' };

export const bodies = {
  balance: objectSchema({}),
  history: objectSchema({ limit: { type: 'integer', minimum: 1, maximum: 500 } }, []),
  purchase: objectSchema({ amount: millsSchema, payment: objectSchema({ kind: { type: 'string', enum: ['card', 'ach', 'check'] }, token: { type: 'string', minLength: 1, maxLength: 100 } }) }),
  settle: objectSchema({ paymentId: { type: 'integer', minimum: 1 } }),
  refund: objectSchema({ kind: { type: 'string', enum: ['partial', 'full'] }, amount: millsSchema, reason: { type: 'string', maxLength: 500 } }, ['kind', 'reason']),
  sessionOpen: objectSchema({ moduleSerial: { type: 'string', maxLength: 32 }, encryptedPasswordSecret: base64Schema(1024), encryptedSessionKey: base64Schema(1024) }),
  sessionClose: objectSchema({ sessionId }),
  print: objectSchema({ sessionId, items: { type: 'array', items: printItemSchema, minItems: 1, maxItems: 500 } }),
  correction: objectSchema({ sessionId, originalIndiciumId: { type: 'integer', minimum: 1 }, item: printItemSchema }),
};

export const heartbeatSchema = objectSchema({ meterId: meterIdSchema, counter, clientTime: { type: 'integer', minimum: 0 }, dynamicPassword: base64Schema(64) });

export const verifySchema = objectSchema({ indicium: base64Schema(2048), location: { type: 'string', maxLength: 100 }, record: { type: 'boolean' } }, ['indicium']);

/** Responses are documented loosely: their exact content is docs/protocol.md. */
export const anyObject: JsonSchema = { type: 'object' };
