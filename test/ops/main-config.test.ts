import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** `npm start`'s program refuses a configuration that would take real money through the sandbox, or license nothing. */
describe('the service program: payment provider and licensing authority chosen by configuration', function () {
  this.timeout(60_000);
  const main = require.resolve('@vbi/server/bin/main');

  it('a production deployment (CA_URL set) without VBI_PAYMENT_PROVIDER or VBI_LICENSING_AUTHORITY, with an unknown one, or with cmls-http missing a setting, refuses to start and starts nothing', async () => {
    const dir = mkdtempSync(join(process.env.VBI_TEST_ROOT as string, 'main-'));
    try {
      for (const [extra, message] of [
        [{}, 'CONFIG_INVALID: a production deployment (CA_URL set) needs VBI_PAYMENT_PROVIDER'],
        [{ VBI_PAYMENT_PROVIDER: 'acme-pay' }, "CONFIG_INVALID: VBI_PAYMENT_PROVIDER 'acme-pay' is not available ('stripe' or 'sandbox')"],
        [{ VBI_PAYMENT_PROVIDER: 'stripe' }, 'CONFIG_INVALID: VBI_PAYMENT_PROVIDER=stripe needs VBI_STRIPE_SECRET_KEY_FILE'],
        // the licensing authority is chosen the same way (docs/licensing.md)
        [{ VBI_PAYMENT_PROVIDER: 'sandbox' }, 'CONFIG_INVALID: a production deployment (CA_URL set) needs VBI_LICENSING_AUTHORITY'],
        [{ VBI_PAYMENT_PROVIDER: 'sandbox', VBI_LICENSING_AUTHORITY: 'cmls' }, "CONFIG_INVALID: VBI_LICENSING_AUTHORITY 'cmls' is not available (cmls-http or dev)"],
        // the HTTP adapter's settings are checked before anything starts, each named when wrong
        [{ VBI_PAYMENT_PROVIDER: 'sandbox', VBI_LICENSING_AUTHORITY: 'cmls-http' }, 'CONFIG_INVALID: VBI_LICENSING_AUTHORITY=cmls-http needs VBI_CMLS_URL'],
        [{ VBI_PAYMENT_PROVIDER: 'sandbox', VBI_LICENSING_AUTHORITY: 'cmls-http', VBI_CMLS_URL: 'http://cmls.invalid' }, 'CONFIG_INVALID: VBI_CMLS_URL must be an https URL'],
        [{ VBI_PAYMENT_PROVIDER: 'sandbox', VBI_LICENSING_AUTHORITY: 'cmls-http', VBI_CMLS_URL: 'https://cmls.invalid' }, 'CONFIG_INVALID: VBI_LICENSING_AUTHORITY=cmls-http needs VBI_CMLS_VENDOR_ID'],
        [{ VBI_PAYMENT_PROVIDER: 'sandbox', VBI_LICENSING_AUTHORITY: 'cmls-http', VBI_CMLS_URL: 'https://cmls.invalid', VBI_CMLS_VENDOR_ID: 'V1', VBI_CMLS_CLIENT_CERT: '/nonexistent/vendor.pem' },
          'CONFIG_INVALID: VBI_CMLS_CLIENT_CERT: cannot read /nonexistent/vendor.pem (ENOENT)'],
      ] as Array<[Record<string, string>, string]>) {
        const r = await run(process.execPath, [main], { env: { ...process.env, CA_URL: 'https://ca.invalid', VBI_VAR_DIR: dir, ...extra } })
          .then(() => ({ code: 0, err: '' }), (e: { code: number; stderr: string }) => ({ code: e.code, err: e.stderr }));
        expect(r.code).to.equal(1);
        expect(r.err).to.contain(message);
      }
      expect(readdirSync(dir)).to.deep.equal([]); // no database, no token, no CA
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
