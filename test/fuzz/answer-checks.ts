import type { DocumentedCode } from './error-catalogue';
import type { RawAnswer } from './http';
import { parseJson } from './http';

/**
 * The checks every single answer must pass, whatever was sent (invariants 1 to 3):
 *  1. no 5xx and no missing answer;
 *  2. an error answer is exactly `{ "error": { "code", "message", "details"? } }` as JSON, with a
 *     code of docs/errors.md sent with that code's documented status, and a client's request
 *     never gets an internal code (an alarm raised by input);
 *  3. no stack trace, token return code, source path or SQL text in the body.
 */
export interface AnswerProblem {
  kind: string;
  detail: string;
  status: number;
  code?: string;
}

/** Routes whose successful bodies describe the service itself (paths, libraries): no leak check on their 2xx. */
const SELF_DESCRIBING = new Set(['GET /v1/health', 'GET /v1/metrics', 'GET /v1/openapi.json']);

/** What must never appear in an answer. The fuzzer's own strings avoid all of these words. */
const LEAKS: ReadonlyArray<[string, RegExp]> = [
  ['stack trace', /(?:\\n|\n)\s*at [\w$.<>[\]]+|\bat (?:async )?[\w$.<>]+ \([^)]*:\d+:\d+\)/],
  ['PKCS#11 return code', /CKR_[A-Z_]+/],
  ['token library', /pkcs11|graphene|softhsm/i],
  ['source path', /\/src\/|\/dist\/|node_modules|\.[jt]s:\d+/],
  ['SQL text', /violates|syntax error|relation "|duplicate key|invalid input syntax|out of range for type|invalid byte sequence|null value in column|current transaction is aborted/i],
  ['JavaScript exception', /\b(?:TypeError|RangeError|ReferenceError|URIError)\b|Cannot read propert|is not a function|undefined is not|Maximum call stack/],
];

/** The error code of an answer, if its body has one. */
export function errorCodeOf(answer: RawAnswer): string | undefined {
  const j = parseJson(answer.text) as { error?: { code?: unknown } } | undefined;
  return typeof j?.error?.code === 'string' ? j.error.code : undefined;
}

function shapeProblem(answer: RawAnswer, catalogue: Map<string, DocumentedCode>): string | undefined {
  const type = String(answer.headers['content-type'] ?? '');
  if (!/^application\/json\b/i.test(type)) return `content type is '${type || 'none'}', not application/json (body: ${answer.text.length} bytes)`;
  const body = parseJson(answer.text);
  if (!body || typeof body !== 'object' || Array.isArray(body)) return 'body is not a JSON object';
  const keys = Object.keys(body);
  if (keys.length !== 1 || keys[0] !== 'error') return `body has the keys [${keys.join(', ')}], not exactly [error]`;
  const e = (body as { error: unknown }).error;
  if (!e || typeof e !== 'object' || Array.isArray(e)) return 'error is not an object';
  const { code, message, details, ...rest } = e as Record<string, unknown>;
  if (Object.keys(rest).length) return `error has undocumented members [${Object.keys(rest).join(', ')}]`;
  if (typeof code !== 'string') return 'error.code is not a string';
  if (typeof message !== 'string') return 'error.message is not a string';
  if (details !== undefined && (details === null || typeof details !== 'object' || Array.isArray(details))) return 'error.details is not an object';
  const doc = catalogue.get(code);
  if (!doc) return `error code ${code} is not in docs/errors.md`;
  if (doc.status !== answer.status) return `error code ${code} is documented with status ${doc.status}, sent with ${answer.status}`;
  return undefined;
}

export function checkAnswer(answer: RawAnswer, ctx: { route: string; method: string }, catalogue: Map<string, DocumentedCode>): AnswerProblem[] {
  const out: AnswerProblem[] = [];
  const status = answer.status;
  if (status === -1) return [{ kind: 'fuzzer could not send', detail: answer.error ?? '', status }];
  if (status === 0) return [{ kind: 'no answer', detail: `no HTTP answer: ${answer.error ?? 'connection closed'}`, status }];
  const code = errorCodeOf(answer);
  // a module out of service shows here and in the health checks; its 503 body is the health report
  const healthReport = ctx.route === 'GET /v1/health' && status === 503;
  if (status >= 500) {
    out.push({ kind: `5xx ${status} ${code ?? '(no code)'}`, detail: `server error ${status}${code ? ` ${code}` : ''} for a client's request`, status, code });
  }
  if (status >= 400 && ctx.method !== 'HEAD' && !healthReport) {
    const bad = shapeProblem(answer, catalogue);
    if (bad) out.push({ kind: `error shape ${status}`, detail: `error answer breaks the documented shape: ${bad}`, status, code });
    else if (status < 500 && code && catalogue.get(code)?.kind === 'internal') {
      out.push({ kind: `internal code ${code}`, detail: `a client's request raised the internal (alarmed) error ${code}`, status, code });
    }
  }
  const skipLeaks = healthReport || (status < 300 && SELF_DESCRIBING.has(ctx.route));
  if (!skipLeaks) {
    for (const [what, re] of LEAKS) {
      const m = re.exec(answer.text);
      if (m) out.push({ kind: `leak: ${what}`, detail: `answer body shows internal detail (${what}): …${answer.text.slice(Math.max(0, m.index - 40), m.index + 80)}…`, status, code });
    }
  }
  return out;
}
