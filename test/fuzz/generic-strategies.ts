import { RouteSpec } from './api-routes';
import { Family, FuzzCase, Strategy } from './cases';
import type { Allowances } from './db-state';
import type { RawRequest } from './http';
import { MutationFamily, mutateBody } from './mutations';
import { Template, Verdict, judge, pathOf, sameEnvelope, serverView, templateFor } from './templates';
import {
  BAD_CONTENT_TYPES, BAD_IDEMPOTENCY_KEYS, CONTENT_ENCODINGS, INVALID_JSON, OTHER_METHODS, PATH_JUNK, QUERY_JUNK, TOP_LEVEL_NOT_OBJECT,
  garbage, oversizedBody, oversizedHeader,
} from './transport';

/**
 * Strategies for any route of the OpenAPI document, driven by its schemas and a valid request
 * of the route (templates.ts): body mutations, request framing, wrong methods, path parameters
 * and query strings. Each case is checked by the judge: only requests that must be refused (or
 * that a read-only route may answer) are sent.
 */

function allowances(t: Template, signed: boolean): Allowances {
  return { mayEndSessions: new Set(t.mayEndSessions), signedBy: signed && t.kind === 'envelope' ? t.mailer?.client.meterId : undefined };
}

function bodyBytes(t: Template): Buffer | undefined {
  return t.body === undefined ? undefined : Buffer.from(JSON.stringify(t.body));
}

function makeCase(t: Template, family: Family, label: string, request: RawRequest, verdict: Exclude<Verdict, 'skip'>, signed: boolean): FuzzCase {
  return { route: t.route.key, family, label, request, expect: verdict, mailer: t.mailer, allow: allowances(t, signed) };
}

/** A body mutation of the route's valid request; retried until the judge says it may be sent. */
function bodyStrategy(route: RouteSpec, family: MutationFamily): Strategy {
  return {
    route: route.key, name: `body ${family}`, weight: route.body ? 2 : 0,
    build(ctx) {
      for (let attempt = 0; attempt < 6; attempt++) {
        const t = templateFor(ctx, route);
        if (t.body === undefined) return undefined;
        const m = mutateBody(ctx.rng, t.body, { family, isBase64: (p) => t.base64Fields.has(p.join('/')), preferPaths: t.preferPaths });
        const view = serverView(m.bytes);
        const verdict = judge(ctx, t, view);
        if (verdict === 'skip') continue;
        // still signed by its mailer when the MAC'd fields and the MAC came through unchanged
        const signed = t.kind === 'envelope' && sameEnvelope(t.body, view);
        return makeCase(t, family, m.label, { method: route.method, path: pathOf(t), headers: t.headers, body: m.bytes }, verdict, signed);
      }
      return undefined;
    },
  };
}

/** Framing: content type and encoding, JSON syntax, sizes, headers, idempotency keys. */
function transportStrategy(route: RouteSpec): Strategy {
  return {
    route: route.key, name: 'transport', weight: 2,
    build(ctx) {
      const { rng } = ctx;
      const t = templateFor(ctx, route);
      const post = route.method !== 'GET';
      const verdict: Exclude<Verdict, 'skip'> = post ? 'reject' : 'any';
      const valid = bodyBytes(t);
      const base = { method: route.method, path: pathOf(t), headers: { ...t.headers } };
      const options: Array<() => FuzzCase | undefined> = [
        () => {
          const type = rng.pick(BAD_CONTENT_TYPES);
          // the valid body under a type that does not say JSON: a JSON route must not read it
          return makeCase(t, 'transport', `Content-Type ${JSON.stringify(type)}`, { ...base, headers: { ...base.headers, 'content-type': type }, body: valid ?? Buffer.from('{}') }, verdict, true);
        },
        () => {
          const enc = rng.pick(CONTENT_ENCODINGS);
          return makeCase(t, 'transport', `Content-Encoding ${enc} with a body that is not ${enc}`, { ...base, headers: { ...base.headers, 'content-type': 'application/json', 'content-encoding': enc }, body: garbage(rng, rng.pick([1, 16, 64, 512])) }, verdict, false);
        },
        () => {
          const text = rng.pick(INVALID_JSON);
          return makeCase(t, 'transport', `invalid JSON ${JSON.stringify(text)}`, { ...base, headers: { ...base.headers, 'content-type': 'application/json' }, body: Buffer.from(text) }, verdict, false);
        },
        () => {
          const text = rng.pick(TOP_LEVEL_NOT_OBJECT);
          return makeCase(t, 'transport', `top-level JSON ${text}`, { ...base, headers: { ...base.headers, 'content-type': 'application/json' }, body: Buffer.from(text) }, verdict, false);
        },
        () => rng.chance(0.5)
          ? makeCase(t, 'transport', 'no body, no content type', { ...base, headers: Object.fromEntries(Object.entries(base.headers).filter(([k]) => k !== 'content-type')) }, verdict, false)
          : makeCase(t, 'transport', 'empty JSON body', { ...base, headers: { ...base.headers, 'content-type': 'application/json' }, body: Buffer.alloc(0) }, verdict, false),
        () => makeCase(t, 'size', 'body past the 64 KiB limit', { ...base, headers: { ...base.headers, 'content-type': 'application/json' }, body: oversizedBody(rng.pick([66_000, 70_000, 120_000])) }, verdict, false),
        () => {
          // a schema-invalid body, so that only the header's size decides (a server may allow big headers)
          const [name, value] = oversizedHeader();
          return makeCase(t, 'size', `${name}: ${value.length}-byte header value`, { ...base, headers: { ...base.headers, [name]: value }, body: post ? Buffer.from('{"fuzz":1}') : undefined }, verdict, false);
        },
        () => {
          if (!base.headers['Idempotency-Key']) return undefined;
          const k = rng.pick([...BAD_IDEMPOTENCY_KEYS, undefined]);
          const headers = { ...base.headers };
          if (k === undefined) delete headers['Idempotency-Key'];
          else headers['Idempotency-Key'] = k;
          return makeCase(t, 'transport', k === undefined ? 'no Idempotency-Key' : `Idempotency-Key ${JSON.stringify(k.length > 20 ? `${k.slice(0, 10)}… (${k.length})` : k)}`, { ...base, headers, body: valid }, 'reject', true);
        },
      ];
      return rng.pick(options)();
    },
  };
}

/** A method the route does not have (→ 404 or 405); the body is the route's valid one. */
function methodStrategy(route: RouteSpec, methodsOfPath: Set<string>): Strategy {
  return {
    route: route.key, name: 'method', weight: 1,
    build(ctx) {
      const others = OTHER_METHODS.filter((m) => !methodsOfPath.has(m));
      if (!others.length) return undefined;
      const t = templateFor(ctx, route);
      const method = ctx.rng.pick(others);
      const body = method === 'GET' ? undefined : bodyBytes(t) ?? Buffer.from('{}');
      return makeCase(t, 'method', `${method} instead of ${route.method}`, { method, path: pathOf(t), headers: { ...t.headers, 'content-type': 'application/json' }, body }, 'reject', true);
    },
  };
}

/** Path parameters: bad percent-encoding, non-numeric and out-of-range ids; extra or missing segments. */
function pathStrategy(route: RouteSpec): Strategy {
  return {
    route: route.key, name: 'path', weight: route.pathParams.length ? 2 : 1,
    build(ctx) {
      const { rng } = ctx;
      const t = templateFor(ctx, route);
      // the challenge route only signs: any answer is harmless; the others must refuse a changed path
      const verdict: Exclude<Verdict, 'skip'> = t.kind === 'challenge' || route.method === 'GET' ? 'any' : 'reject';
      const body = bodyBytes(t);
      if (route.pathParams.length && rng.chance(0.8)) {
        const p = rng.pick(route.pathParams);
        const junk = rng.pick(PATH_JUNK);
        return makeCase(t, 'path', `path {${p.name}} = ${junk.length > 40 ? `${junk.slice(0, 12)}… (${junk.length})` : junk}`, { method: route.method, path: pathOf(t, { [p.name]: junk }), headers: t.headers, body }, verdict, true);
      }
      const path = pathOf(t);
      const variants = [`${path}/x`, `/v1/x${path}`, `${path}%00`, `${path}%zz`, path.replace('/v1/', '/v1//'), path.replace('/v1/', '/V2/')];
      const mangled = rng.pick(variants);
      return makeCase(t, 'path', `path ${mangled.length > 60 ? `${mangled.slice(0, 60)}…` : mangled}`, { method: route.method, path: mangled, headers: t.headers, body }, route.method === 'GET' ? 'any' : 'reject', true);
    },
  };
}

/** Query strings on read-only routes (a quote, the documents). */
function queryStrategy(route: RouteSpec): Strategy {
  return {
    route: route.key, name: 'query', weight: route.method === 'GET' ? (route.queryParams.length ? 4 : 1) : 0,
    build(ctx) {
      const t = templateFor(ctx, route);
      const { rng } = ctx;
      const junk = rng.pick(QUERY_JUNK);
      const own = t.query ? t.query.slice(1) : '';
      // replace the route's own parameters sometimes, add to them otherwise
      const q = rng.chance(0.5) || !own ? junk : `${own}&${junk}`;
      const path = `${pathOf({ ...t, query: '' })}?${q}`;
      return makeCase(t, 'query', `query ?${q.length > 60 ? `${q.slice(0, 60)}…` : q}`, { method: route.method, path, headers: t.headers }, 'any', false);
    },
  };
}

/** Every generic strategy for every route of the document. */
export function genericStrategies(routes: RouteSpec[]): Strategy[] {
  const methodsByPath = new Map<string, Set<string>>();
  for (const r of routes) (methodsByPath.get(r.path) ?? methodsByPath.set(r.path, new Set()).get(r.path)!).add(r.method);
  const out: Strategy[] = [];
  for (const r of routes) {
    out.push(transportStrategy(r), methodStrategy(r, methodsByPath.get(r.path)!), pathStrategy(r), queryStrategy(r));
    for (const f of ['structural', 'type', 'size', 'encoding'] as const) out.push(bodyStrategy(r, f));
  }
  return out.filter((s) => s.weight > 0);
}

