import { join } from 'node:path';
import { DevPki, startDevPki } from '@vbi/server/pki/dev-pki';
import { TEST_SO_PIN, TEST_USER_PIN, provisionToken, testLibrary, uniqueLabel } from './hsm';

/** One dev PKI (CA token, vendor token, HTTP CA) per test run, shared by the ledger fixtures. */
let pki: Promise<DevPki> | undefined;

export function testPki(): Promise<DevPki> {
  pki ??= (async () => {
    const caLabel = uniqueLabel('ca');
    const vendorLabel = uniqueLabel('vendor');
    // without free slots the dev PKI cannot make its tokens: they come from the fixture pool, kept for the run
    if (testLibrary().profile.provisioning !== 'free-slot') {
      await provisionToken(caLabel, 'aes', false, { keep: true });
      await provisionToken(vendorLabel, 'aes', false, { keep: true });
    }
    return startDevPki({
      library: testLibrary(), caLabel, vendorLabel,
      soPin: TEST_SO_PIN, userPin: TEST_USER_PIN, caDir: join(process.env.VBI_TEST_ROOT as string, 'dev-ca'),
    });
  })();
  return pki;
}

export async function closeTestPki(): Promise<void> {
  if (pki) await (await pki).close();
  pki = undefined;
}
