import { expect } from 'chai';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

/**
 * The layer map of docs/architecture.md, checked against every import in src/: a layer imports
 * only what its row allows (type-only imports: also the types column), every layer of src/ has a
 * row and every row a layer, and the rows' value imports form no cycle.
 */
const ROOT = resolve(__dirname, '..', '..');
const SRC = join(ROOT, 'src');
const DOC = join(ROOT, 'docs', 'architecture.md');

/** Files that compose the layers: they may import anything (docs/architecture.md). */
const COMPOSITION_ROOTS = new Set(['main.ts', 'server.ts', 'service.ts', 'client/cli.ts', 'ceremony/cli.ts', 'indicium/cli.ts', 'pki/metergen-cli.ts', 'pki/ca/main.ts']);
/** The transaction engine's files: nothing from hsm. */
const ENGINE_FILES = ['ledger/ledger.ts', 'ledger/command-runner.ts', 'ledger/group-runner.ts', 'ledger/module-rotation.ts', 'ledger/step.ts'];

/**
 * Layers whose table access is all in src/db/repositories (docs/architecture.md, "Table access"):
 * they import 'knex' for types only (a transaction handed on) and build no query themselves.
 */
const NO_SQL_LAYERS = ['api', 'indicium', 'licensing', 'mailer', 'ops', 'pki', 'reports'];

interface Rule { values: Set<string>; types: Set<string> }
interface Import { file: string; target: string; typeOnly: boolean }

function readRules(doc: string): Map<string, Rule> {
  const section = doc.split('## The layer map')[1]?.split('\n## ')[0];
  if (!section) throw new Error('docs/architecture.md has no "The layer map" section');
  const rules = new Map<string, Rule>();
  for (const line of section.split('\n')) {
    const cells = line.split('|').slice(1, -1).map((c) => c.trim());
    if (cells.length !== 4 || cells[0] === 'layer' || /^-+$/.test(cells[0])) continue;
    const list = (c: string) => new Set(c.split(',').map((x) => x.trim()).filter(Boolean));
    if (rules.has(cells[0])) throw new Error(`layer ${cells[0]} has two rows`);
    rules.set(cells[0], { values: list(cells[2]), types: list(cells[3]) });
  }
  return rules;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return sourceFiles(p);
    return p.endsWith('.ts') ? [p] : [];
  });
}

/** The layer of a path under src/: errors.ts, a top folder, or web/<folder>. */
function layerOf(rel: string): string {
  const parts = rel.split('/');
  if (parts.length === 1) return parts[0].replace(/\.ts$/, '');
  return parts[0] === 'web' && parts.length > 2 ? `web/${parts[1]}` : parts[0];
}

function importsOf(file: string, text: string): Import[] {
  const out: Import[] = [];
  const statement = /^(import|export)(\s+type)?\s[^;]*?\sfrom\s+'(\.[^']*)'/gms;
  for (const m of text.matchAll(statement)) {
    const target = resolve(dirname(file), m[3]);
    if (!target.startsWith(SRC + '/')) continue; // files outside src/ are not layers
    out.push({ file, target, typeOnly: m[2] !== undefined });
  }
  // `import('./x').T` in a type position
  for (const m of text.matchAll(/import\('(\.[^']*)'\)/g)) {
    const target = resolve(dirname(file), m[1]);
    if (target.startsWith(SRC + '/')) out.push({ file, target, typeOnly: true });
  }
  return out;
}

function violations(rules: Map<string, Rule>, sources: Array<{ file: string; text: string }>): string[] {
  const found: string[] = [];
  for (const { file, text } of sources) {
    const rel = relative(SRC, file);
    const from = layerOf(rel);
    for (const imp of importsOf(file, text)) {
      const to = layerOf(relative(SRC, imp.target));
      const targetRel = relative(SRC, imp.target);
      if (ENGINE_FILES.includes(rel) && to === 'hsm') found.push(`${rel} imports ${targetRel}: the transaction engine imports nothing from hsm`);
      if (from === 'mailer' && to === 'hsm' && !imp.typeOnly) found.push(`${rel} imports ${targetRel}: the mailer takes only types from hsm`);
      if (to === from || COMPOSITION_ROOTS.has(rel)) continue;
      const rule = rules.get(from);
      if (!rule) continue; // reported by the rows test
      if (rule.values.has(to) || (imp.typeOnly && rule.types.has(to))) continue;
      found.push(`${rel} imports ${targetRel} (${from} may not import ${imp.typeOnly ? 'types from ' : ''}${to})`);
    }
  }
  return found;
}

/** Where a file of a NO_SQL_LAYERS layer imports 'knex' at runtime or runs a query on a table itself. */
function sqlOutsideDb(sources: Array<{ file: string; text: string }>): string[] {
  const found: string[] = [];
  for (const { file, text } of sources) {
    const rel = relative(SRC, file);
    if (!NO_SQL_LAYERS.includes(layerOf(rel))) continue;
    for (const m of text.matchAll(/^import(\s+type)?\s[^;]*?\sfrom\s+'knex'/gms)) {
      if (!m[1]) found.push(`${rel} imports knex at runtime (only \`import type\`: table access is in src/db/repositories)`);
    }
    if (/\b(?:db|trx|knex)(?:\.raw)?\(\s*['"`]/.test(text)) found.push(`${rel} runs a query itself (table access is in src/db/repositories)`);
  }
  return found;
}

function cycle(rules: Map<string, Rule>): string[] | null {
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (n: string): string[] | null => {
    if (state.get(n) === 'done') return null;
    if (state.get(n) === 'open') return [...path.slice(path.indexOf(n)), n];
    state.set(n, 'open');
    path.push(n);
    for (const m of rules.get(n)?.values ?? []) {
      const c = visit(m);
      if (c) return c;
    }
    path.pop();
    state.set(n, 'done');
    return null;
  };
  for (const n of rules.keys()) {
    const c = visit(n);
    if (c) return c;
  }
  return null;
}

describe('architecture: the layer map of docs/architecture.md', () => {
  const rules = readRules(readFileSync(DOC, 'utf8'));
  const files = sourceFiles(SRC);

  it('every layer of src/ has a row, every row names a layer of src/, and every row names only layers', () => {
    const layers = new Set(files.map((f) => layerOf(relative(SRC, f))).filter((l) => !COMPOSITION_ROOTS.has(`${l}.ts`)));
    for (const d of readdirSync(join(SRC, 'web'))) if (statSync(join(SRC, 'web', d)).isDirectory()) layers.add(`web/${d}`);
    layers.delete('web'); // only web/<folder> are layers
    expect([...layers].filter((l) => !rules.has(l)), 'layers without a row').to.deep.equal([]);
    expect([...rules.keys()].filter((l) => !layers.has(l)), 'rows without a layer').to.deep.equal([]);
    for (const [layer, r] of rules) {
      for (const named of r.values) expect(rules.has(named), `${layer} names ${named}`).to.equal(true);
      for (const named of r.types) expect(rules.has(named) || COMPOSITION_ROOTS.has(`${named}.ts`), `${layer} names types of ${named}`).to.equal(true);
    }
    for (const root of COMPOSITION_ROOTS) expect(existsSync(join(SRC, root)), root).to.equal(true);
  });

  it('no layer imports what its row does not allow', () => {
    expect(violations(rules, files.map((file) => ({ file, text: readFileSync(file, 'utf8') })))).to.deep.equal([]);
  });

  it('the layers whose table access moved to src/db/repositories import knex for types only and query no table themselves', () => {
    expect(sqlOutsideDb(files.map((file) => ({ file, text: readFileSync(file, 'utf8') })))).to.deep.equal([]);
    // the check finds them: a runtime import, a query on a table, raw SQL; a type-only import and another layer pass
    const check = (rel: string, text: string) => sqlOutsideDb([{ file: join(SRC, rel), text }]);
    expect(check('mailer/x.ts', "import knex from 'knex';")).to.have.length(1);
    expect(check('api/x.ts', "import { type Knex } from 'knex';")).to.have.length(1);
    expect(check('licensing/x.ts', "const rows = await this.db('license_requests').where({ status: 'pending' });")).to.have.length(1);
    expect(check('reports/x.ts', "const r = await db.raw('select 1');")).to.have.length(1);
    expect(check('api/x.ts', "import type { Knex } from 'knex';")).to.deep.equal([]);
    expect(check('ledger/x.ts', "import knex from 'knex';")).to.deep.equal([]);
  });

  it('the allowed value imports form no cycle: the layers have an order', () => {
    expect(cycle(rules)).to.equal(null);
  });

  it('a file of src/ over 300 lines says why at its top', () => {
    const long = files.filter((f) => readFileSync(f, 'utf8').split('\n').length > 300)
      .filter((f) => !/^\/\/ Over 300 lines: \S/.test(readFileSync(f, 'utf8')))
      .map((f) => relative(SRC, f));
    expect(long).to.deep.equal([]);
  });

  it('the check finds what breaks the map: an import up, a value import of a type-only layer, hsm in the engine', () => {
    // the rules above, applied to imports that break them (no file is written: paths are only resolved)
    const fake = (rel: string, text: string) => ({ rel, text });
    const violationsOfText = (file: string, text: string) => violations(rules, [{ file, text }]);
    const cases = [
      fake('protocol/x.ts', "import { Ledger } from '../ledger/ledger';"),
      fake('web/app/x.ts', "import { createService } from '../../service';"),
      fake('mailer/x.ts', "import { HsmModule } from '../hsm/hsm-module';"),
      fake('ledger/group-runner.ts', "import type { KeyRef } from '../hsm/hsm-module';"),
    ];
    for (const c of cases) {
      const file = join(SRC, c.rel);
      const found = violationsOfText(file, c.text);
      expect(found, c.rel).to.have.length.greaterThan(0);
    }
    expect(violationsOfText(join(SRC, 'web/app/x.ts'), "import type { ServiceDeps } from '../../service';")).to.deep.equal([]);
    expect(cycle(new Map([['a', { values: new Set(['b']), types: new Set() }], ['b', { values: new Set(['a']), types: new Set() }]]))).to.deep.equal(['a', 'b', 'a']);
  });
});
