import { readFileSync } from 'node:fs';

/** One documented error code: the HTTP status it is sent with and whose fault it is. */
export interface DocumentedCode {
  status: number;
  kind: 'user' | 'internal';
}

/**
 * The error codes of docs/errors.md, read from its tables (`| \`CODE\` | status | kind | meaning |`).
 * The document is the published contract, so an answer is checked against it rather than against
 * packages/core/src/errors.ts: a code the service sends but never documented is a finding.
 */
export function parseErrorCatalogue(markdown: string): Map<string, DocumentedCode> {
  const codes = new Map<string, DocumentedCode>();
  const row = /^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|\s*(\d{3})\s*\|\s*(user|internal)\s*\|/gm;
  for (const m of markdown.matchAll(row)) codes.set(m[1], { status: Number(m[2]), kind: m[3] as 'user' | 'internal' });
  if (codes.size === 0) throw new Error('no error codes found in the error catalogue');
  return codes;
}

export function loadErrorCatalogue(file: string): Map<string, DocumentedCode> {
  return parseErrorCatalogue(readFileSync(file, 'utf8'));
}
