import { build, Plugin } from 'esbuild';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { runMain } from '@vbi/core/cli/run-main';

/**
 * Builds the web app (packages/server/src/web/app, the pages) into packages/server/dist/web, where
 * the server serves it from: one bundle (esbuild, the only bundler) and the static files. Runs
 * after tsc in `npm run build`, so the browser code is type-checked by the same compiler as the
 * API it shares types with. esbuild reads the workspaces' TypeScript sources (the "vbi-source"
 * condition of their package.json exports), not tsc's output.
 *
 * Shared modules (@vbi/core's protocol, indicium and pki, @vbi/client's client and web) are pure TypeScript over
 * Buffer; the bundle gets the `buffer` package for Buffer. Some of them import node: modules
 * for functions the browser never calls (e.g. scryptSync in passwordSecret): those imports
 * resolve to an empty module, so a call would fail loudly instead of silently.
 */
const root = join(__dirname, '..', '..');
const server = join(root, 'packages', 'server');
const out = join(server, 'dist', 'web');

const noNodeBuiltins: Plugin = {
  name: 'no-node-builtins',
  setup(b) {
    b.onResolve({ filter: /^node:/ }, (args) => ({ path: args.path, namespace: 'node-builtin' }));
    b.onLoad({ filter: /.*/, namespace: 'node-builtin' }, () => ({ contents: 'module.exports = {};', loader: 'js' }));
  },
};

async function main(): Promise<void> {
  await fs.rm(out, { recursive: true, force: true });
  await fs.mkdir(out, { recursive: true });
  const result = await build({
    entryPoints: [join(server, 'src', 'web', 'app', 'main.ts')],
    conditions: ['vbi-source'],
    outfile: join(out, 'app.js'),
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: ['chrome110', 'firefox115', 'safari16'],
    minify: true,
    sourcemap: true,
    inject: [join(root, 'packages', 'client', 'src', 'web', 'buffer-global.ts')],
    define: { 'process.env.NODE_ENV': '"production"' },
    plugins: [noNodeBuiltins],
    logLevel: 'warning',
    metafile: true,
  });
  for (const name of await fs.readdir(join(server, 'src', 'web', 'static'))) {
    await fs.copyFile(join(server, 'src', 'web', 'static', name), join(out, name));
  }
  const bytes = Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
  process.stderr.write(`build-web: packages/server/dist/web (${Math.round(bytes / 1024)} KiB)\n`);
}

runMain(main);
