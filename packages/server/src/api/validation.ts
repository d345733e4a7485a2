import Ajv2020, { type ErrorObject, type ValidateFunction } from 'ajv/dist/2020';
import type { RequestHandler } from 'express';
import { vbiError } from '@vbi/core/errors';
import { MAX_AMOUNT_MILLS } from '@vbi/core/protocol/amounts';

/**
 * Request validation with JSON Schema (draft 2020-12, the dialect of OpenAPI 3.1). Schemas are
 * plain objects so the same object validates requests and goes into the OpenAPI document
 * (./openapi.ts). Every object schema must be closed (`additionalProperties: false`): an
 * unknown field is a client bug or an attack and is refused, never ignored.
 */
export type JsonSchema = { readonly [keyword: string]: unknown };

/** Which part of the request a schema checks; reported as `details.in`. */
export type RequestPart = 'body' | 'query' | 'params';

/** One problem: `path` is a JSON Pointer into the checked part ('' is the whole part). */
export interface ValidationIssue {
  path: string;
  message: string;
}

/** Money: an integer number of mills, 1 to 10^12 (as assertMills in packages/core/src/protocol/amounts.ts). */
export const millsSchema = {
  type: 'integer',
  minimum: 1,
  maximum: MAX_AMOUNT_MILLS,
  description: 'amount in mills (1/1000 of the currency unit), an integer',
} as const satisfies JsonSchema;

/** Meter (device) IDs, as METER_ID_PATTERN in packages/core/src/psd/psd-package.ts. */
export const meterIdSchema = {
  type: 'string',
  pattern: '^[A-Z0-9][A-Z0-9-]{0,31}$',
  description: 'meter (device) id',
} as const satisfies JsonSchema;

/** A closed object schema: `required` lists the mandatory properties (all of them by default). */
export function objectSchema(properties: Record<string, JsonSchema>, required: readonly string[] = Object.keys(properties), extra: JsonSchema = {}): JsonSchema {
  return { type: 'object', properties, required: [...required], additionalProperties: false, ...extra };
}

/** The keys of T that are not optional. */
type RequiredKeys<T> = { [K in keyof T]-?: object extends Pick<T, K> ? never : K }[keyof T];

/**
 * objectSchema for a protocol body type (packages/core/src/protocol/bodies.ts), checked at compile time: one
 * schema per member, no member the type lacks, and `required` names exactly the type's
 * non-optional members. Curried so that T is given and the required list is inferred.
 */
export function bodySchema<T>() {
  return <const R extends readonly RequiredKeys<T>[]>(
    properties: { [K in keyof T]-?: JsonSchema },
    required: R & ([Exclude<RequiredKeys<T>, R[number]>] extends [never] ? unknown : { missing: Exclude<RequiredKeys<T>, R[number]> }),
  ): JsonSchema => objectSchema(properties as Record<string, JsonSchema>, required as readonly string[]);
}

const MAX_ISSUES = 20;

// Compiled validators are a pure cache of the schema objects; two Ajv instances because bodies
// are JSON (types must match exactly) while query strings and path segments are text (coerced).
const strictAjv = new Ajv2020({ allErrors: true, strict: true });
const coercingAjv = new Ajv2020({ allErrors: true, strict: true, coerceTypes: 'array' });
const compiled = new WeakMap<object, { strict?: ValidateFunction; coercing?: ValidateFunction }>();

function compile(schema: JsonSchema, coerce: boolean): ValidateFunction {
  let entry = compiled.get(schema);
  if (!entry) {
    assertClosed(schema, '');
    entry = {};
    compiled.set(schema, entry);
  }
  const key = coerce ? 'coercing' : 'strict';
  entry[key] ??= (coerce ? coercingAjv : strictAjv).compile(schema);
  return entry[key]!;
}

/**
 * Refuses, at definition time, object schemas that would let unknown fields through.
 * Walks properties, items and the combinators; $ref targets are the caller's responsibility.
 */
function assertClosed(schema: JsonSchema, at: string): void {
  const isObject = schema.type === 'object' || (Array.isArray(schema.type) && schema.type.includes('object')) || schema.properties !== undefined;
  if (isObject && schema.additionalProperties === undefined && schema.unevaluatedProperties === undefined) {
    throw new Error(`schema${at ? ` at ${at}` : ''}: object schemas must set additionalProperties (false) so unknown fields are refused`);
  }
  const sub = (s: unknown, p: string) => {
    if (s && typeof s === 'object' && !Array.isArray(s)) assertClosed(s as JsonSchema, p);
  };
  for (const [name, s] of Object.entries((schema.properties ?? {}) as Record<string, unknown>)) sub(s, `${at}/properties/${name}`);
  sub(schema.items, `${at}/items`);
  sub(schema.additionalProperties, `${at}/additionalProperties`);
  for (const k of ['anyOf', 'oneOf', 'allOf'] as const) {
    const list = schema[k];
    if (Array.isArray(list)) list.forEach((s, i) => sub(s, `${at}/${k}/${i}`));
  }
}

function pointer(base: string, name: string): string {
  return `${base}/${name.replace(/~/g, '~0').replace(/\//g, '~1')}`;
}

function issues(errors: ErrorObject[] | null | undefined): ValidationIssue[] {
  const out: ValidationIssue[] = [];
  const seen = new Set<string>();
  for (const e of errors ?? []) {
    let issue: ValidationIssue;
    if (e.keyword === 'additionalProperties') {
      issue = { path: pointer(e.instancePath, String(e.params.additionalProperty)), message: 'unknown field' };
    } else if (e.keyword === 'required') {
      issue = { path: pointer(e.instancePath, String(e.params.missingProperty)), message: 'is required' };
    } else {
      issue = { path: e.instancePath, message: e.message ?? e.keyword };
    }
    const k = `${issue.path}\u0000${issue.message}`;
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(issue);
    if (out.length === MAX_ISSUES) break;
  }
  return out;
}

/**
 * Checks `value` against `schema`; throws 400 VALIDATION_FAILED with
 * `details: { in, errors: [{ path, message }] }`. With `coerce`, strings are converted to the
 * schema's types in place (for query strings and path parameters).
 */
export function validate<T = unknown>(schema: JsonSchema, value: unknown, part: RequestPart, opts: { coerce?: boolean } = {}): T {
  const check = compile(schema, opts.coerce ?? false);
  if (check(value)) return value as T;
  const errors = issues(check.errors);
  const first = errors[0];
  const message = first ? `${part}${first.path ? ` ${first.path}` : ''}: ${first.message}` : `${part} is invalid`;
  throw vbiError('VALIDATION_FAILED', message, { in: part, errors });
}

/**
 * Middleware: validates req.body (no type coercion: JSON has types). A missing body is
 * checked as `undefined` and fails any object schema ("must be object").
 */
export function validateBody(schema: JsonSchema): RequestHandler {
  compile(schema, false);
  return (req, _res, next) => {
    validate(schema, req.body, 'body');
    next();
  };
}

/**
 * Middleware: validates the query string, converting values to the schema's types
 * (`?limit=5` → 5). Express 5 re-parses req.query on every read, so the converted copy
 * replaces the getter on this request.
 */
export function validateQuery(schema: JsonSchema): RequestHandler {
  compile(schema, true);
  return (req, _res, next) => {
    const copy: Record<string, unknown> = { ...(req.query as Record<string, unknown>) };
    validate(schema, copy, 'query', { coerce: true });
    Object.defineProperty(req, 'query', { value: copy, writable: true, configurable: true, enumerable: true });
    next();
  };
}

/** Middleware: validates path parameters (converted to the schema's types, e.g. integer ids). */
export function validateParams(schema: JsonSchema): RequestHandler {
  compile(schema, true);
  return (req, _res, next) => {
    const copy: Record<string, unknown> = { ...req.params };
    validate(schema, copy, 'params', { coerce: true });
    req.params = copy as typeof req.params;
    next();
  };
}
