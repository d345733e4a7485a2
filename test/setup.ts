import { mkdtempSync, rmSync, writeFileSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeTestLibrary } from './helpers/hsm';
import { closeTestDatabases } from './helpers/db';
import { closeTestPki } from './helpers/pki';

/**
 * Root hooks: every test run gets its own SoftHSM2 token directory in a temp folder, so tests
 * never see the dev token in var/ and tokens are created fresh per run. PKCS11_LIBRARY comes
 * from the environment or from var/dev.env written by scripts/bootstrap.sh (npm pretest).
 */
const root = mkdtempSync(join(tmpdir(), 'vbi-test-'));
const tokens = join(root, 'tokens');
mkdirSync(tokens);
const conf = join(root, 'softhsm2.conf');
writeFileSync(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\n`);
process.env.SOFTHSM2_CONF = conf;
process.env.VBI_TEST_ROOT = root;
if (!process.env.PKCS11_LIBRARY) {
  const dev = readFileSync(join(__dirname, '..', '..', 'var', 'dev.env'), 'utf8');
  const m = /^PKCS11_LIBRARY=(.*)$/m.exec(dev);
  if (!m) throw new Error('run scripts/bootstrap.sh first (npm test does)');
  process.env.PKCS11_LIBRARY = m[1];
}

export const mochaHooks = {
  async afterAll(): Promise<void> {
    await closeTestPki();
    await closeTestDatabases();
    await closeTestLibrary();
    rmSync(root, { recursive: true, force: true });
  },
};
