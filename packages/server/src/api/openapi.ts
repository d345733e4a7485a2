import type { IRouter, Request, RequestHandler, Response } from 'express';
import { ERROR_CODES } from '@vbi/core/errors';
import { requireJsonContent } from './json-body';
import { JsonSchema, validateBody, validateParams, validateQuery } from './validation';

/**
 * A small route registry: every route is declared once with its schemas, which both register
 * the express handlers (validation included) and describe the route in an OpenAPI 3.1
 * document. A test compares the document with the express router (routesMissingFromSpec), so
 * the published API cannot drift from what is served.
 */

/** The methods a route may have (lower case, as express and OpenAPI spell them). */
export type HttpMethod = 'get' | 'post' | 'put' | 'patch' | 'delete';

/** One documented response. The content type defaults to application/json. */
export interface ResponseSpec {
  description: string;
  schema?: JsonSchema;
  contentType?: string;
  headers?: Record<string, { description: string; schema: JsonSchema }>;
}

/** An OpenAPI parameter object (header parameters from middleware, e.g. Idempotency-Key). */
export interface ParameterSpec {
  name: string;
  in: 'header' | 'query' | 'path' | 'cookie';
  required?: boolean;
  description?: string;
  schema: JsonSchema;
}

/** What a middleware adds to the operations that use it. */
export interface OpenApiFragment {
  parameters?: ParameterSpec[];
  responses?: Record<string, ResponseSpec>;
}

/** A middleware that may describe itself (see idempotency(), rateLimit()). */
export type DocumentedMiddleware = RequestHandler & { openapi?: OpenApiFragment };

/**
 * A route. `path` uses express syntax with `:name` parameters only (no wildcards or optional
 * segments, which OpenAPI cannot express). Order of the chain: `before` (authentication, rate
 * limiting) → content-type check and params/query/body validation → `middleware` (idempotency:
 * only valid requests reserve a key) → `handler`. A handler that returns a value without
 * having answered gets it sent as JSON with the route's first 2xx status.
 */
export interface RouteDefinition<TBody = unknown, TQuery = Record<string, unknown>> {
  method: HttpMethod;
  path: string;
  summary: string;
  description?: string;
  operationId?: string;
  tags?: string[];
  /** OpenAPI security requirements, e.g. [{ meterSession: [] }]. */
  security?: Array<Record<string, string[]>>;
  body?: JsonSchema;
  query?: JsonSchema;
  /** Schema of the path parameters; its properties must be exactly the path's `:name`s. */
  params?: JsonSchema;
  /** Status code → response; at least one. */
  responses: Record<number, ResponseSpec>;
  before?: DocumentedMiddleware[];
  middleware?: DocumentedMiddleware[];
  handler: (req: Request<any, unknown, TBody, TQuery>, res: Response) => unknown;
}

/** The parts of an OpenAPI 3.1 document this registry writes. */
export interface OpenApiDocument {
  openapi: '3.1.0';
  info: { title: string; version: string; description?: string };
  paths: Record<string, Record<string, unknown>>;
  components: { schemas: Record<string, unknown>; securitySchemes?: Record<string, unknown> };
}

/** The document's info block, and where the registry's router is mounted. */
export interface ApiRegistryOptions {
  title: string;
  version: string;
  description?: string;
  /** Prefix of the router's mount point, prepended to every documented path (e.g. when the router is mounted at '/v1'). */
  mountPath?: string;
  securitySchemes?: Record<string, unknown>;
}

const PATH_SYNTAX = /^\/$|^(\/([A-Za-z0-9._~-]+|:[A-Za-z_][A-Za-z0-9_]*))+$/;
/** Reference to the error body schema in components; use it for documented error responses. */
export const ERROR_SCHEMA_REF = { $ref: '#/components/schemas/Error' } as const;

/** Express ':name' → OpenAPI '{name}'. */
export function toOpenApiPath(expressPath: string): string {
  return expressPath.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, '{$1}');
}

function pathParamNames(path: string): string[] {
  return [...path.matchAll(/:([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1]);
}

function operationId(method: string, path: string): string {
  const words = path.split('/').filter(Boolean).map((seg) => (seg.startsWith(':') ? `by-${seg.slice(1)}` : seg));
  return method + words.flatMap((w) => w.split(/[^A-Za-z0-9]+/)).filter(Boolean).map((w) => w[0].toUpperCase() + w.slice(1)).join('');
}

function response(r: ResponseSpec): Record<string, unknown> {
  return {
    description: r.description,
    ...(r.headers ? { headers: r.headers } : {}),
    ...(r.schema ? { content: { [r.contentType ?? 'application/json']: { schema: r.schema } } } : {}),
  };
}

/** The error body of every non-2xx answer (packages/server/src/api/http-errors.ts). */
export const ERROR_BODY_SCHEMA = {
  type: 'object',
  required: ['error'],
  additionalProperties: false,
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      additionalProperties: false,
      properties: {
        code: { type: 'string', enum: Object.keys(ERROR_CODES), description: 'stable error code (docs/errors.md)' },
        message: { type: 'string' },
        details: { type: 'object', description: 'structured details, user errors only' },
      },
    },
  },
} as const;

/**
 * Registers routes on `router` and documents them. Create one per router (no global state);
 * the express app and the document come from the same definitions.
 */
export class ApiRegistry {
  private paths: OpenApiDocument['paths'] = {};

  constructor(
    private readonly router: IRouter,
    private readonly opts: ApiRegistryOptions,
  ) {}

  /**
   * A registry for a router mounted at `mountPath` (relative to this registry's) whose routes go
   * into this registry's document: `app.use('/v1/admin', r); api.forRouter(r, '/v1/admin')`.
   */
  forRouter(router: IRouter, mountPath: string): ApiRegistry {
    const child = new ApiRegistry(router, { ...this.opts, mountPath: `${this.opts.mountPath ?? ''}${mountPath}` });
    child.paths = this.paths;
    return child;
  }

  /** Registers the express route and records its OpenAPI operation. Throws on a malformed definition. */
  defineRoute<TBody = unknown, TQuery = Record<string, unknown>>(def: RouteDefinition<TBody, TQuery>): void {
    if (!PATH_SYNTAX.test(def.path)) throw new Error(`route path '${def.path}': only literal segments and :name parameters are supported`);
    const statuses = Object.keys(def.responses).map(Number);
    if (statuses.length === 0) throw new Error(`${def.method.toUpperCase()} ${def.path}: at least one response is required`);
    const names = pathParamNames(def.path);
    const paramProps = (def.params?.properties ?? {}) as Record<string, JsonSchema>;
    if (def.params && [...Object.keys(paramProps)].sort().join() !== [...names].sort().join()) {
      throw new Error(`${def.method.toUpperCase()} ${def.path}: params schema must describe exactly ${names.join(', ') || 'no parameters'}`);
    }
    const docPath = toOpenApiPath(`${this.opts.mountPath ?? ''}${def.path}`);
    const item = (this.paths[docPath] ??= {});
    if (item[def.method]) throw new Error(`${def.method.toUpperCase()} ${docPath} is defined twice`);
    item[def.method] = this.operation(def, names, paramProps);

    const success = statuses.filter((s) => s >= 200 && s < 300).sort((a, b) => a - b)[0] ?? 200;
    const chain: RequestHandler[] = [...(def.before ?? [])];
    if (def.params) chain.push(validateParams(def.params));
    if (def.query) chain.push(validateQuery(def.query));
    if (def.body) chain.push(requireJsonContent(), validateBody(def.body));
    chain.push(...(def.middleware ?? []));
    const handler = def.handler;
    chain.push(async (req, res) => {
      const out = await handler(req as Request<never, unknown, TBody, TQuery>, res);
      // `(req, res) => res.json(x)` returns res: the handler answered itself (perhaps through
      // idempotency's recording res.json, which sends only after the answer is stored).
      if (out !== undefined && out !== res && !res.headersSent) res.status(success).json(out);
    });
    this.router[def.method](def.path, ...chain);
  }

  private operation(def: RouteDefinition<never, never>, names: string[], paramProps: Record<string, JsonSchema>): Record<string, unknown> {
    const parameters: unknown[] = names.map((name) => ({ name, in: 'path', required: true, schema: paramProps[name] ?? { type: 'string' } }));
    const query = def.query;
    if (query) {
      const required = new Set((query.required ?? []) as string[]);
      for (const [name, schema] of Object.entries((query.properties ?? {}) as Record<string, JsonSchema>)) {
        parameters.push({ name, in: 'query', required: required.has(name), schema });
      }
    }
    const responses: Record<string, unknown> = {};
    for (const [status, r] of Object.entries(def.responses)) responses[status] = response(r);
    for (const m of [...(def.before ?? []), ...(def.middleware ?? [])]) {
      parameters.push(...(m.openapi?.parameters ?? []));
      for (const [status, r] of Object.entries(m.openapi?.responses ?? {})) responses[status] ??= response(r);
    }
    responses.default = { description: 'error (docs/errors.md)', content: { 'application/json': { schema: ERROR_SCHEMA_REF } } };
    return {
      operationId: def.operationId ?? operationId(def.method, `${this.opts.mountPath ?? ''}${def.path}`),
      summary: def.summary,
      ...(def.description ? { description: def.description } : {}),
      ...(def.tags ? { tags: def.tags } : {}),
      ...(def.security ? { security: def.security } : {}),
      ...(parameters.length ? { parameters } : {}),
      ...(def.body ? { requestBody: { required: true, content: { 'application/json': { schema: def.body } } } } : {}),
      responses,
    };
  }

  /** The OpenAPI 3.1 document of every route defined so far (a fresh copy on each call). */
  openApiDocument(): OpenApiDocument {
    return structuredClone({
      openapi: '3.1.0' as const,
      info: { title: this.opts.title, version: this.opts.version, ...(this.opts.description ? { description: this.opts.description } : {}) },
      paths: this.paths,
      components: {
        schemas: { Error: ERROR_BODY_SCHEMA },
        ...(this.opts.securitySchemes ? { securitySchemes: this.opts.securitySchemes } : {}),
      },
    });
  }

  /** Serves the document (itself documented) at `path`, by default GET /v1/openapi.json. */
  serveOpenApi(path = '/v1/openapi.json'): void {
    this.defineRoute({
      method: 'get',
      path,
      summary: 'this OpenAPI document',
      tags: ['meta'],
      responses: { 200: { description: 'OpenAPI 3.1 document', schema: { type: 'object' } } },
      handler: () => this.openApiDocument(),
    });
  }
}

/** One route as express holds it: method upper-case ('ALL' for .all()), OpenAPI-style path. */
export interface RoutedOperation {
  method: string;
  path: string;
}

interface LayerLike {
  route?: { path: unknown; methods: Record<string, boolean> };
  handle: { stack?: LayerLike[] };
  rawPath?: unknown;
}

/**
 * Every route of an express 5 app or router, found by walking the router stack (routes and
 * mounted routers, recursively; plain middleware is skipped). Paths are converted to OpenAPI
 * syntax; a RegExp path is reported as its source.
 */
export function expressRoutes(appOrRouter: unknown): RoutedOperation[] {
  const holder = appOrRouter as { router?: { stack?: LayerLike[] }; stack?: LayerLike[] };
  const stack = holder.router?.stack ?? holder.stack;
  if (!Array.isArray(stack)) throw new Error('expressRoutes: not an express 5 app or router');
  const out: RoutedOperation[] = [];
  const walk = (layers: LayerLike[], prefix: string) => {
    for (const layer of layers) {
      if (layer.route) {
        const paths = Array.isArray(layer.route.path) ? layer.route.path : [layer.route.path];
        for (const p of paths) {
          const path = typeof p === 'string' ? toOpenApiPath(prefix + p) : `${prefix}${String(p)}`;
          for (const [m, on] of Object.entries(layer.route.methods)) {
            if (on) out.push({ method: m === '_all' ? 'ALL' : m.toUpperCase(), path });
          }
        }
      } else if (Array.isArray(layer.handle?.stack)) {
        const mount = layer.rawPath;
        if (typeof mount !== 'string') throw new Error('expressRoutes: a router is mounted at a non-string path (or the router package predates rawPath)');
        walk(layer.handle.stack, prefix + (mount === '/' ? '' : mount));
      }
    }
  };
  walk(stack, '');
  return out;
}

/**
 * Compares what express serves with the document: `undocumented` are routes (as 'GET /path')
 * missing from the document, `unrouted` are documented operations no route serves.
 * Both empty means the spec and the app agree.
 */
export function routesMissingFromSpec(appOrRouter: unknown, doc: OpenApiDocument): { undocumented: string[]; unrouted: string[] } {
  const routed = new Set(expressRoutes(appOrRouter).map((r) => `${r.method} ${r.path}`));
  const documented = new Set<string>();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const method of Object.keys(item)) documented.add(`${method.toUpperCase()} ${path}`);
  }
  return {
    undocumented: [...routed].filter((r) => !documented.has(r)).sort(),
    unrouted: [...documented].filter((d) => !routed.has(d)).sort(),
  };
}
