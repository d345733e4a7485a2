import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A run's own SoftHSM2 token directory and scratch root in a temp folder (SOFTHSM2_CONF,
 * VBI_TEST_ROOT), so the run never sees the dev token in var/; PKCS11_LIBRARY from the
 * environment or from var/dev.env written by scripts/bootstrap.sh. The test suite's root hooks
 * and the fuzzer both start this way. Returns the root.
 */
export function useTestRoot(prefix: string): string {
  const root = mkdtempSync(join(tmpdir(), prefix));
  const tokens = join(root, 'tokens');
  mkdirSync(tokens);
  const conf = join(root, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  process.env.SOFTHSM2_CONF = conf;
  process.env.VBI_TEST_ROOT = root;
  if (!process.env.PKCS11_LIBRARY) {
    const dev = readFileSync(join(__dirname, '..', '..', '..', 'var', 'dev.env'), 'utf8');
    const m = /^PKCS11_LIBRARY=(.*)$/m.exec(dev);
    if (!m) throw new Error('run scripts/bootstrap.sh first (npm test does)');
    process.env.PKCS11_LIBRARY = m[1];
  }
  return root;
}
