import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { get } from 'node:https';
import { join } from 'node:path';
import { ServerFixture, serverFixture } from '../helpers/server';

/** TLS from configuration (VBI_TLS_CERT / VBI_TLS_KEY in packages/server/src/bin/main.ts). */
describe('the API over TLS', function () {
  this.timeout(120_000);
  let f: ServerFixture;
  let cert: Buffer;
  before(async () => {
    const dir = mkdtempSync(join(process.env.VBI_TEST_ROOT as string, 'tls-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
    cert = readFileSync(join(dir, 'cert.pem'));
    f = await serverFixture({ tls: { cert, key: readFileSync(join(dir, 'key.pem')) }, pool: 1 });
  });
  after(() => f?.close());

  it('serves HTTPS with the configured certificate', async () => {
    expect(f.url.startsWith('https://')).to.equal(true);
    const body = await new Promise<{ status: number; json: { database: string } }>((resolve, reject) => {
      get(`${f.url}/v1/health`, { ca: cert }, (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) }));
      }).on('error', reject);
    });
    expect(body.status).to.equal(200);
    expect(body.json.database).to.equal('ok');
  });

  it('refuses a client that does not trust the certificate', async () => {
    const err = await new Promise<Error | null>((resolve) => {
      get(`${f.url}/v1/health`, (res) => { res.resume(); resolve(null); }).on('error', resolve);
    });
    expect(String(err)).to.match(/self[- ]signed|certificate/i);
  });
});
