import Ajv2020, { type ValidateFunction } from 'ajv/dist/2020';

/**
 * The routes of the service as its OpenAPI document (GET /v1/openapi.json) describes them, and
 * a validator for the document's request schemas: the fuzzer uses the server's own schemas to
 * know whether a mutated request is still schema-valid (then only a semantic check can refuse
 * it) or certainly invalid (then it must be refused).
 */
export type JsonSchema = { readonly [k: string]: unknown };

export interface ParamSpec {
  name: string;
  required: boolean;
  schema: JsonSchema;
}

export interface RouteSpec {
  /** 'POST /v1/purchases/{paymentId}/settle' */
  key: string;
  method: string;
  path: string;
  pathParams: ParamSpec[];
  queryParams: ParamSpec[];
  headerParams: ParamSpec[];
  body?: JsonSchema;
}

interface OperationObject {
  parameters?: Array<{ name: string; in: string; required?: boolean; schema?: JsonSchema }>;
  requestBody?: { content?: Record<string, { schema?: JsonSchema }> };
}

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

export function routesOf(doc: { paths?: Record<string, Record<string, OperationObject>> }): RouteSpec[] {
  const out: RouteSpec[] = [];
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    for (const [method, op] of Object.entries(item)) {
      if (!METHODS.includes(method)) continue;
      const params = (where: string) => (op.parameters ?? []).filter((p) => p.in === where).map((p) => ({ name: p.name, required: p.required ?? false, schema: p.schema ?? {} }));
      out.push({
        key: `${method.toUpperCase()} ${path}`, method: method.toUpperCase(), path,
        pathParams: params('path'), queryParams: params('query'), headerParams: params('header'),
        body: op.requestBody?.content?.['application/json']?.schema,
      });
    }
  }
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** The request path of a route with its `{name}` parameters replaced by the given (already encoded) values. */
export function fillPath(route: RouteSpec, values: Record<string, string>): string {
  return route.path.replace(/\{([^}]+)\}/g, (_m, name: string) => {
    const v = values[name];
    if (v === undefined) throw new Error(`${route.key}: no value for path parameter ${name}`);
    return v;
  });
}

/** Validates request bodies against the document's schemas (draft 2020-12, no coercion: bodies are JSON). */
export class SchemaChecker {
  private readonly ajv = new Ajv2020({ strict: false, allErrors: false, validateFormats: false });
  private readonly cache = new WeakMap<object, ValidateFunction>();

  /** Whether a JSON body (as the server parses it) matches the schema. */
  valid(schema: JsonSchema, value: unknown): boolean {
    let fn = this.cache.get(schema);
    if (!fn) this.cache.set(schema, (fn = this.ajv.compile(schema)));
    // no coercion and no defaults: ajv does not modify the value
    return fn(value) as boolean;
  }
}
