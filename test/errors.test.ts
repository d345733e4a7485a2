import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERROR_CODES, UserError, InternalError, vbiError } from '@vbi/core/errors';

/** One row of a code table in docs/errors.md: | `CODE` | status | kind | meaning | */
interface DocRow {
  code: string;
  status: number;
  kind: string;
  line: number;
}

/** Every table row of docs/errors.md whose first cell is a backquoted code. */
function documentedRows(doc: string): DocRow[] {
  const rows: DocRow[] = [];
  doc.split('\n').forEach((text, i) => {
    const m = /^\|\s*`([A-Z0-9_]+)`\s*\|\s*([^|]*?)\s*\|\s*([^|]*?)\s*\|/.exec(text);
    if (m) rows.push({ code: m[1], status: Number(m[2]), kind: m[3], line: i + 1 });
  });
  return rows;
}

describe('error registry', () => {
  const doc = readFileSync(join(__dirname, '..', '..', 'docs', 'errors.md'), 'utf8');
  const rows = documentedRows(doc);
  const registry = ERROR_CODES as Record<string, { status: number; kind: string }>;

  it('documents every code in docs/errors.md', () => {
    const documented = new Set(rows.map((r) => r.code));
    const missing = Object.keys(ERROR_CODES).filter((c) => !documented.has(c));
    expect(missing).to.deep.equal([]);
  });

  it('documents no code that the registry does not have', () => {
    const unknown = rows.filter((r) => !(r.code in registry)).map((r) => `${r.code} (line ${r.line})`);
    expect(unknown).to.deep.equal([]);
  });

  it('documents each code once', () => {
    const seen = new Set<string>();
    const duplicates = rows.filter((r) => (seen.has(r.code) ? true : (seen.add(r.code), false)))
      .map((r) => `${r.code} (line ${r.line})`);
    expect(duplicates).to.deep.equal([]);
  });

  it("documents each code's HTTP status and kind as the registry has them", () => {
    const wrong = rows
      .filter((r) => r.code in registry)
      .filter((r) => r.status !== registry[r.code].status || r.kind !== registry[r.code].kind)
      .map((r) => `${r.code} (line ${r.line}): documented ${r.status} ${r.kind}, registry ${registry[r.code].status} ${registry[r.code].kind}`);
    expect(wrong).to.deep.equal([]);
  });

  it('maps user errors to 4xx and internal errors to 5xx or 409', () => {
    for (const [code, e] of Object.entries(ERROR_CODES)) {
      if (e.kind === 'user') expect(e.status, code).to.be.within(400, 499);
      else expect([409, 500, 502, 503, 504], code).to.include(e.status);
      const err = vbiError(code as keyof typeof ERROR_CODES);
      expect(err).to.be.instanceOf(e.kind === 'user' ? UserError : InternalError);
      expect(err.toJSON()).to.deep.include({ code });
    }
  });
});
