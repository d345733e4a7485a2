import { join } from 'node:path';
import { DevPki, startDevPki } from '../../src/pki/dev-pki';
import { TEST_SO_PIN, TEST_USER_PIN, testLibrary, uniqueLabel } from './hsm';

/** One dev PKI (CA token, vendor token, HTTP CA) per test run, shared by the ledger fixtures. */
let pki: Promise<DevPki> | undefined;

export function testPki(): Promise<DevPki> {
  pki ??= startDevPki({
    library: testLibrary(), caLabel: uniqueLabel('ca'), vendorLabel: uniqueLabel('vendor'),
    soPin: TEST_SO_PIN, userPin: TEST_USER_PIN, caDir: join(process.env.VBI_TEST_ROOT as string, 'dev-ca'),
  });
  return pki;
}

export async function closeTestPki(): Promise<void> {
  if (pki) await (await pki).close();
  pki = undefined;
}
