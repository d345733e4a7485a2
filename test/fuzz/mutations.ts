import type { Prng } from './prng';
import { JsonPath, allPaths, getAt, pointer, setAt } from './json-paths';

/**
 * Value-level mutations of a JSON body: one node of a valid request's body is removed, retyped,
 * resized or given bad text, and the body is serialised to bytes (some mutations write raw JSON
 * tokens or bytes that JSON.stringify cannot produce: 1e999, deep nesting, invalid UTF-8).
 * Whether the result must be refused is decided elsewhere (templates.ts), from the server's view
 * of the bytes.
 */
export type MutationFamily = 'structural' | 'type' | 'size' | 'encoding';

export interface BodyMutation {
  family: MutationFamily;
  label: string;
  bytes: Buffer;
}

/** Control characters: C0 (NUL first), DEL, C1, and the line breaks a name never needs. */
export const CONTROL_CHARS = ['\u0000', '\u0001', '\u0007', '\u0008', '\u001b', '\u001f', '\u007f', '\u0085', '\u009f', '\n', '\r', '\t'];
/** Unpaired UTF-16 surrogates: not Unicode, and not representable in UTF-8. */
export const LONE_SURROGATES = ['\ud800', '\udbff', '\udc00', '\udfff'];
/** Byte sequences that are not UTF-8. */
export const INVALID_UTF8: ReadonlyArray<[string, Buffer]> = [
  ['byte 0xFF', Buffer.from([0xff])],
  ['truncated sequence 0xC3', Buffer.from([0xc3])],
  ['bad continuation 0xC3 0x28', Buffer.from([0xc3, 0x28])],
  ['encoded surrogate 0xED 0xA0 0x80', Buffer.from([0xed, 0xa0, 0x80])],
  ['overlong "/" 0xC0 0xAF', Buffer.from([0xc0, 0xaf])],
  ['5-byte form 0xF8 0x88 0x80 0x80 0x80', Buffer.from([0xf8, 0x88, 0x80, 0x80, 0x80])],
  ['bytes 0xFE 0xFF', Buffer.from([0xfe, 0xff])],
];
/** Valid but unusual Unicode: only a schema can refuse these. */
export const ODD_UNICODE = ['\u2028', '\ufeff', '\u202e', 'e\u0301', '\uff12\uff10\uff12\uff16\uff10', '\u{1f4ee}', '\u00a0'];
/** Strings that are not base64, or base64 the schema pattern allows but is not canonical. */
export const BAD_BASE64 = ['!!!!', '====', 'YQ', 'YQ=', 'YQ===', 'a-b_', 'AAAA AAAA', 'AA\nAA', '%2B%2F', '*', 'Zm9v\u0000'];
/** Byte lengths of well-formed base64 of the wrong size (MACs are 32, challenges 16, RSA ciphertexts 384). */
export const BASE64_LENGTHS = [0, 1, 15, 16, 17, 31, 32, 33, 48, 64, 255, 383, 385, 512];
/** Names of fields no schema has. */
export const EXTRA_KEYS = ['admin', '__proto__', 'constructor', '', 'meterId ', 'role', 'x'.repeat(300)];
/** Raw JSON number tokens, some of them not JSON at all. */
export const RAW_NUMBERS = ['1e999', '-1e999', '1E400', '1.0', '-0', '12345678901234567890123', '00012', '+1', '.5', 'NaN', 'Infinity', '0x1F', '1e-400'];

const TOKEN = 'FUZZ~RAW~TOKEN';

type Replacement =
  | { kind: 'value'; value: unknown; what: string }
  | { kind: 'remove'; what: string }
  /** raw JSON text in place of the node */
  | { kind: 'raw'; text: string; what: string }
  /** the node becomes a string with raw bytes in the middle */
  | { kind: 'bytes'; before: string; bytes: Buffer; after: string; what: string };

function typeOf(v: unknown): 'string' | 'number' | 'boolean' | 'null' | 'array' | 'object' {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v as 'string' | 'number' | 'boolean' | 'object';
}

function insertAt(rng: Prng, s: string, piece: string): string {
  const i = rng.int(s.length + 1);
  return s.slice(0, i) + piece + s.slice(i);
}

function deepNesting(depth: number, objects: boolean): string {
  return objects ? '{"a":'.repeat(depth) + '1' + '}'.repeat(depth) : '['.repeat(depth) + ']'.repeat(depth);
}

function structural(rng: Prng, node: unknown, path: JsonPath, parentIsObject: boolean): Replacement {
  const options: Array<() => Replacement> = [
    () => ({ kind: 'value', value: null, what: 'null' }),
    () => ({ kind: 'value', value: [node], what: 'wrapped in an array' }),
    () => ({ kind: 'value', value: { value: node }, what: 'one level deeper' }),
    () => ({ kind: 'value', value: {}, what: 'empty object' }),
    () => ({ kind: 'value', value: [], what: 'empty array' }),
  ];
  if (path.length > 0 && parentIsObject) options.push(() => ({ kind: 'remove', what: 'missing' }), () => ({ kind: 'remove', what: 'missing' }));
  if (typeOf(node) === 'object') {
    options.push(() => {
      const key = rng.pick(EXTRA_KEYS);
      const value = rng.pick<unknown>([true, 1, 'x', null, {}]);
      const copy: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(node as object)) copy[k] = v;
      Object.defineProperty(copy, key, { value, enumerable: true, writable: true, configurable: true });
      return { kind: 'value', value: copy, what: `extra field ${JSON.stringify(key.length > 20 ? `${key.slice(0, 20)}…` : key)}` };
    });
  }
  if (typeOf(node) === 'array') options.push(() => ({ kind: 'value', value: Object.fromEntries((node as unknown[]).map((v, i) => [String(i), v])), what: 'object for array' }));
  return rng.pick(options)();
}

function retyped(rng: Prng, node: unknown): Replacement {
  switch (typeOf(node)) {
    case 'string':
      return { kind: 'value', ...rng.pick<{ value: unknown; what: string }>([
        { value: 42, what: 'number for string' }, { value: 0, what: 'zero for string' }, { value: true, what: 'boolean for string' },
        { value: [node], what: 'array for string' }, { value: { s: node }, what: 'object for string' }, { value: 1.5, what: 'float for string' },
      ]) };
    case 'number': {
      const n = node as number;
      if (rng.chance(0.35)) {
        const t = rng.pick(RAW_NUMBERS);
        return { kind: 'raw', text: t, what: `raw number token ${t}` };
      }
      return { kind: 'value', ...rng.pick<{ value: unknown; what: string }>([
        { value: String(n), what: 'number as string' }, { value: n + 0.5, what: 'float for integer' }, { value: 1e23, what: 'huge 1e23' },
        { value: -1, what: 'negative' }, { value: -n - 1, what: 'negative' }, { value: Number.MAX_SAFE_INTEGER + 2, what: '2^53 + 1' },
        { value: 2 ** 63, what: '2^63' }, { value: 1e20, what: '1e20' }, { value: 'NaN', what: '"NaN"' }, { value: 'Infinity', what: '"Infinity"' },
        { value: '-Infinity', what: '"-Infinity"' }, { value: '1e999', what: '"1e999"' }, { value: true, what: 'boolean for number' },
        { value: '0x10', what: '"0x10"' }, { value: 0, what: 'zero' }, { value: -0.0001, what: 'tiny negative' },
      ]) };
    }
    case 'boolean':
      return { kind: 'value', ...rng.pick<{ value: unknown; what: string }>([{ value: 'true', what: '"true"' }, { value: 1, what: '1 for boolean' }, { value: 0, what: '0 for boolean' }]) };
    case 'null':
      return { kind: 'value', ...rng.pick<{ value: unknown; what: string }>([{ value: 0, what: '0 for null' }, { value: '', what: '"" for null' }, { value: false, what: 'false for null' }]) };
    default:
      return { kind: 'value', ...rng.pick<{ value: unknown; what: string }>([{ value: '[object Object]', what: 'string for object' }, { value: 1, what: 'number for object' }, { value: true, what: 'boolean for object' }]) };
  }
}

function resized(rng: Prng, node: unknown): Replacement {
  const t = typeOf(node);
  const r = rng.int(4);
  if (r === 0 || t === 'boolean' || t === 'null') {
    // deep nesting: within the 64 KiB limit, or beyond it
    const [depth, objects] = rng.pick<[number, boolean]>([[100, false], [5_000, false], [20_000, false], [40_000, false], [3_000, true], [12_000, true]]);
    return { kind: 'raw', text: deepNesting(depth, objects), what: `nesting ${depth} deep (${objects ? 'objects' : 'arrays'})` };
  }
  if (t === 'string') {
    const n = rng.pick([0, 0, 101, 257, 1_025, 10_000, 60_000, 70_000]);
    return { kind: 'value', value: 'A'.repeat(n), what: n === 0 ? 'empty string' : `string of ${n} chars` };
  }
  if (t === 'number') return { kind: 'raw', text: '9'.repeat(rng.pick([20, 400, 5_000])), what: 'number with many digits' };
  if (t === 'array') {
    const first = (node as unknown[])[0] ?? 1;
    const each = JSON.stringify(first).length + 1;
    const n = rng.chance(0.5) ? Math.max(2, Math.min(5_000, Math.floor(50_000 / each))) : rng.pick([0, 501, 100_000]);
    return n === 100_000
      ? { kind: 'raw', text: `[${'1,'.repeat(n - 1)}1]`, what: `array of ${n} numbers` }
      : { kind: 'value', value: Array.from({ length: n }, () => first), what: `array of ${n} copies` };
  }
  const big: Record<string, unknown> = { ...(node as object) };
  for (let i = 0; i < 2_000; i++) big[`k${i}`] = i;
  return { kind: 'value', value: big, what: 'object with 2000 extra fields' };
}

function badText(rng: Prng, node: unknown, base64ish: boolean): Replacement {
  const s = typeof node === 'string' ? node : 'text';
  const r = rng.int(base64ish ? 7 : 5);
  if (r === 0) {
    const c = rng.pick(CONTROL_CHARS);
    return { kind: 'value', value: insertAt(rng, s, c), what: `control character U+${c.charCodeAt(0).toString(16).padStart(4, '0')}` };
  }
  if (r === 1) {
    const c = rng.pick(LONE_SURROGATES);
    return { kind: 'value', value: insertAt(rng, s, c), what: `lone surrogate U+${c.charCodeAt(0).toString(16)}` };
  }
  if (r === 2) {
    const [what, bytes] = rng.pick(INVALID_UTF8);
    const i = rng.int(s.length + 1);
    return { kind: 'bytes', before: s.slice(0, i), bytes, after: s.slice(i), what: `invalid UTF-8 (${what})` };
  }
  if (r === 3) {
    const u = rng.pick(ODD_UNICODE);
    return { kind: 'value', value: insertAt(rng, s, u), what: `unusual Unicode ${JSON.stringify(u)}` };
  }
  if (r === 4) return { kind: 'value', value: `${s}\u0000`, what: 'trailing NUL' };
  if (r === 5) {
    const b = rng.pick(BAD_BASE64);
    return { kind: 'value', value: b, what: `bad base64 ${JSON.stringify(b)}` };
  }
  const n = rng.pick(BASE64_LENGTHS);
  return { kind: 'value', value: rng.bytes(n).toString('base64'), what: `base64 of ${n} bytes` };
}

/** Serialises `template` with the node at `path` replaced. */
export function serialise(template: unknown, path: JsonPath, rep: Replacement): Buffer {
  if (rep.kind === 'remove') return Buffer.from(JSON.stringify(setAt(template, path, undefined, true)) ?? '');
  if (rep.kind === 'value') return Buffer.from(JSON.stringify(setAt(template, path, rep.value)) ?? 'null');
  const marker = rep.kind === 'raw' ? TOKEN : `${rep.before}${TOKEN}${rep.after}`;
  const text = JSON.stringify(setAt(template, path, marker));
  if (rep.kind === 'raw') {
    const at = text.indexOf(`"${TOKEN}"`);
    return Buffer.from(text.slice(0, at) + rep.text + text.slice(at + TOKEN.length + 2));
  }
  const at = text.indexOf(TOKEN);
  return Buffer.concat([Buffer.from(text.slice(0, at)), rep.bytes, Buffer.from(text.slice(at + TOKEN.length))]);
}

/**
 * One mutation of one node of `template`. `preferPaths` (e.g. the fields that matter for a
 * route) are picked more often; `isBase64` says which string fields carry base64.
 */
export function mutateBody(rng: Prng, template: unknown, opts: { family?: MutationFamily; isBase64?: (p: JsonPath) => boolean; preferPaths?: JsonPath[] } = {}): BodyMutation {
  const family = opts.family ?? rng.pick<MutationFamily>(['structural', 'type', 'size', 'encoding']);
  const paths = allPaths(template);
  const leaves = paths.filter((p) => { const t = typeOf(getAt(template, p)); return t !== 'object' && t !== 'array'; });
  const texts = leaves.filter((p) => typeof getAt(template, p) === 'string');
  let path: JsonPath;
  if (opts.preferPaths?.length && rng.chance(0.4)) path = rng.pick(opts.preferPaths);
  // bad text goes into text fields (every one of them, over a run), now and then elsewhere
  else if (family === 'encoding' && texts.length && rng.chance(0.85)) path = rng.pick(texts);
  else if (family === 'encoding' || family === 'type') path = rng.pick(leaves.length ? leaves : paths);
  else path = rng.pick(paths.length > 1 && rng.chance(0.85) ? paths.slice(1) : paths);
  const node = getAt(template, path);
  const parentIsObject = path.length > 0 && typeOf(getAt(template, path.slice(0, -1))) === 'object';
  let rep: Replacement;
  if (family === 'structural') rep = structural(rng, node, path, parentIsObject);
  else if (family === 'type') rep = retyped(rng, node);
  else if (family === 'size') rep = resized(rng, node);
  else rep = badText(rng, node, opts.isBase64?.(path) ?? false);
  return { family, label: `${family}: ${pointer(path)} ← ${rep.what}`, bytes: serialise(template, path, rep) };
}
