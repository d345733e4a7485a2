import { rmSync } from 'node:fs';
import { closeTestLibrary } from './helpers/hsm';
import { closeTestDatabases } from './helpers/db';
import { closeTestPki } from './helpers/pki';
import { useTestRoot } from './helpers/test-root';

/**
 * Root hooks: every test run gets its own SoftHSM2 token directory in a temp folder, so tests
 * never see the dev token in var/ and tokens are created fresh per run (useTestRoot).
 */
const root = useTestRoot('vbi-test-');

export const mochaHooks = {
  async afterAll(): Promise<void> {
    await closeTestPki();
    await closeTestDatabases();
    await closeTestLibrary();
    rmSync(root, { recursive: true, force: true });
  },
};
