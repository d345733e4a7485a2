import type { Prng } from './prng';

/**
 * Request-level mutations that do not depend on what a route means: the body's framing
 * (Content-Type, Content-Encoding, JSON syntax, size), the headers, the method, the path
 * parameters' percent-encoding and the query string.
 */

/** Content types a JSON route must refuse (415), or that cannot decode to the JSON sent. */
export const BAD_CONTENT_TYPES = [
  'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=fuzz', 'application/xml', 'application/jsonx',
  'application/json; charset=latin1', 'application/json; charset=utf-16', 'application/json; charset=x-fuzz', '', 'json', '*/*',
];

/** Content-Encoding values; the body sent with them is not in that encoding. */
export const CONTENT_ENCODINGS = ['gzip', 'br', 'deflate', 'compress', 'gzip, gzip', 'x-fuzz', 'identity, gzip'];

/** Bodies that are not JSON, or whose top level is not an object. */
export const INVALID_JSON = [
  '{"meterId": ', '{"a":1,}', "{'a':1}", '{"a" 1}', '[1,2', '{"a":1}}', '{"a":01}', '{"a":.5}', '{"a":NaN}', '{"a":Infinity}',
  '{"a":"\\x41"}', '{"a":"\\u12"}', '{"a":"\\ud800"', '{"a":"unterminated', '\u0000{}', '{}\u0000', 'nul', 'tru', '{"a":1}{"b":2}', '\ufeff{}',
];
export const TOP_LEVEL_NOT_OBJECT = ['123', '"text"', 'null', 'true', '[]', '[{}]', '-0', '""'];

/** Path parameter values: bad percent-encoding, non-numeric and out-of-range ids, odd lengths. */
export const PATH_JUNK = [
  '%zz', '%FF', '%', '%E0%A4%A', '%00', '%C0%AF', '%ED%A0%80', '%2e%2e', '..', 'abc', '-1', '0', '1.5', '1e3', '99999999999999999999',
  '9007199254740993', '0x10', '%201', '%0A', 'AB%00CD', '%2F', 'null', 'undefined', '__proto__', 'constructor', '%F0%9F%92%A9', '%u0041',
  'A'.repeat(2_000), '%25', '%3Cscript%3E',
];

/** Query strings added to a route's own. */
export const QUERY_JUNK = [
  'x=1', '__proto__[admin]=1', 'a[b][c]=1', 'weightOz=1&weightOz=2', 'mailClass=%zz', 'mailClass=%00', 'weightOz=1e999', 'weightOz=NaN',
  'weightOz=-1', 'weightOz=0', 'weightOz=', 'zone=0', 'zone=10', 'zone=1.5', 'zone=x', `mailClass=${'a'.repeat(41)}`, 'mailClass=%E2%80%AE',
  'weightOz=1e-400', 'weightOz=0x10', '&&&', '=', '%', 'limit=-1',
];

export const OTHER_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];

/** Garbage that is not in any compression format. */
export function garbage(rng: Prng, n = 64): Buffer {
  return rng.bytes(n);
}

/** A JSON object padded past the 64 KiB body limit. */
export function oversizedBody(bytes = 70_000): Buffer {
  return Buffer.from(JSON.stringify({ pad: 'x'.repeat(bytes) }));
}

/** A header value of about 20 kB (past node's 16 KiB header limit). */
export function oversizedHeader(): [string, string] {
  return ['X-Fuzz-Padding', 'h'.repeat(20_000)];
}

/** Idempotency-Key values that are not 1 to 128 printable ASCII characters (node sends latin1 as is). */
export const BAD_IDEMPOTENCY_KEYS = ['', 'k'.repeat(129), '\u00e9t\u00e9', 'tab\there', '\u00ff'];
