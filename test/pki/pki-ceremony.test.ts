import { requireFreeSlots } from '../helpers/hsm';
import { expect } from 'chai';
import { ChildProcess, execFile, spawn } from 'node:child_process';
import { generateKeyPairSync, sign as nodeSign } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildCsr } from '@vbi/server/pki/csr';
import { readCertInfo } from '@vbi/core/pki/cert-info';
import { spkiHash } from '@vbi/core/pki/extensions';
import { fromPem, toPem } from '@vbi/core/pki/pem';
import { openssl } from '../pki-fixtures';

const run = promisify(execFile);
const CLI = require.resolve('@vbi/server/bin/ceremony');
const CA_MAIN = require.resolve('@vbi/server/bin/postal-ca');

/** Every file under `dir`, recursively. */
function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
}

describe('PKI ceremony CLI and the CA process (own token directory, own processes)', () => {
  let dir: string;
  let caDir: string;
  let env: NodeJS.ProcessEnv;
  let caProcess: ChildProcess | undefined;
  before(function () {
    requireFreeSlots(this);
    dir = mkdtempSync(join(process.env.VBI_TEST_ROOT as string, 'pki-cli-'));
    caDir = join(dir, 'ca');
    mkdirSync(join(dir, 'tokens'));
    writeFileSync(join(dir, 'softhsm2.conf'), `directories.tokendir = ${join(dir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`);
    env = {
      ...process.env, SOFTHSM2_CONF: join(dir, 'softhsm2.conf'), VBI_VAR_DIR: dir,
      VBI_SO_PIN: 'pki-officer-pin-31', PKCS11_USER_PIN: 'pki-user-pin-47',
    };
  });
  after(() => {
    if (caProcess && caProcess.exitCode === null) caProcess.kill('SIGTERM');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const cli = (...args: string[]) => run(process.execPath, [CLI, ...args], { env }).then(
    (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout, err: e.stderr }),
  );

  it('ca-init, vendor-ra, ca-register-ra, status and ca-rollover write public files only', async () => {
    for (const label of ['cli-ca', 'cli-vendor']) {
      const r = await cli('init-token', '--label', label, '--officer', 'C. A. Officer');
      expect(r.code, r.err).to.equal(0);
    }
    const init = await cli('ca-init', '--label', 'cli-ca', '--officer', 'C. A. Officer', '--ca-dir', caDir);
    expect(init.code, init.err).to.equal(0);
    const ra = await cli('vendor-ra', '--label', 'cli-vendor', '--officer', 'V. Endor', '--ra-id', 'vendor-7', '--out', join(dir, 'ra.pem'));
    expect(ra.code, ra.err).to.equal(0);
    const reg = await cli('ca-register-ra', '--ca-dir', caDir, '--ra-id', 'vendor-7', '--public-key', join(dir, 'ra.pem'), '--officer', 'C. A. Officer');
    expect(reg.code, reg.err).to.equal(0);
    // the fingerprint the vendor reads out is the one the CA registered
    const fp = /SPKI-SHA256 ([0-9a-f]{64})/.exec(ra.out)?.[1];
    expect(reg.out).to.contain(fp as string);

    for (const label of ['cli-ca', 'cli-vendor']) {
      const status = await cli('status', '--label', label);
      expect(status.code, status.out + status.err).to.equal(0);
      expect(status.out).to.contain('no weak attributes');
    }
    const status = await cli('status', '--label', 'cli-ca', '--json');
    const keys = JSON.parse(status.out).keys as Array<{ label: string; role: string }>;
    expect(keys.map((k) => `${k.label}:${k.role}`)).to.include.members(['vbi.ca.root.1:ca-root', 'vbi.ca.root.2:ca-root', 'vbi.ca.issuing.1:ca-issuing']);

    // the root published the hash of generation 2; the officer's output says so
    const root1 = readFileSync(join(caDir, 'root-1.pem'), 'utf8');
    const next = /next root key SPKI-SHA256 ([0-9a-f]{64})/.exec(init.out)?.[1];
    const roll = await cli('ca-rollover', '--label', 'cli-ca', '--officer', 'C. A. Officer', '--ca-dir', caDir);
    expect(roll.code, roll.err).to.equal(0);
    expect(roll.out).to.contain('root generation 2');
    const root2 = readCertInfo(fromPem('CERTIFICATE', readFileSync(join(caDir, 'root-2.pem'), 'utf8')));
    expect(spkiHash(root2.spki).toString('hex')).to.equal(next);

    for (const f of ['root.pem', 'root-1.pem', 'root-2.pem', 'root-link-2.pem', 'issuing-1.pem', 'issuing-2.pem', 'ca.json', join('ra', 'vendor-7.pem')]) {
      expect(existsSync(join(caDir, f)), f).to.equal(true);
    }
    for (const f of walk(caDir)) expect(readFileSync(f, 'utf8'), f).not.to.match(/PRIVATE KEY/);
    const v1 = await openssl('verify', '-x509_strict', '-CAfile', join(caDir, 'root-1.pem'), join(caDir, 'issuing-1.pem'), join(caDir, 'root-link-2.pem'));
    expect(v1.code, v1.out).to.equal(0);
    const v2 = await openssl('verify', '-x509_strict', '-CAfile', join(caDir, 'root.pem'), join(caDir, 'issuing-2.pem'));
    expect(v2.code, v2.out).to.equal(0);
    expect(readFileSync(join(caDir, 'root.pem'), 'utf8')).to.not.equal(root1);

    const transcripts = readdirSync(join(dir, 'ceremony'));
    for (const step of ['ca-init', 'vendor-ra', 'ca-register-ra', 'ca-rollover']) expect(transcripts.some((f) => f.includes(`-${step}-`)), step).to.equal(true);
    for (const f of transcripts) {
      const body = readFileSync(join(dir, 'ceremony', f), 'utf8');
      expect(body).not.to.contain('pki-officer-pin-31');
      expect(body).not.to.contain('pki-user-pin-47');
    }
  });

  it('the CA runs as its own process on its own port and issues for a registered RA', async () => {
    // an RA whose key the test holds (the vendor token lives in another process's token directory)
    const raKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    writeFileSync(join(dir, 'ra-test.pem'), toPem('PUBLIC KEY', raKey.publicKey.export({ type: 'spki', format: 'der' }) as Buffer));
    const reg = await cli('ca-register-ra', '--ca-dir', caDir, '--ra-id', 'vendor-test', '--public-key', join(dir, 'ra-test.pem'), '--officer', 'C. A. Officer');
    expect(reg.code, reg.err).to.equal(0);

    const proc = spawn(process.execPath, [CA_MAIN], { env: { ...env, VBI_CA_DIR: caDir, VBI_CA_PORT: '0', VBI_CA_USER_PIN: 'pki-user-pin-47' } });
    caProcess = proc;
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      let err = '';
      proc.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
        if (m) resolve(m[1]);
      });
      proc.stderr?.on('data', (d: Buffer) => { err += d.toString(); });
      proc.once('exit', (code) => reject(new Error(`CA exited ${code}: ${err}`)));
    });

    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const csr = await buildCsr({
      subject: { commonName: 'M-CLI-1', organizationalUnit: 'indicium' },
      publicKeySpki: key.publicKey.export({ type: 'spki', format: 'der' }) as Buffer,
      signer: { algorithm: 'ecdsa-sha256', sign: async (tbs) => nodeSign('sha256', tbs, key.privateKey) },
    });
    const res = await fetch(`${url}/v1/certificates`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ csr: csr.toString('base64'), raKeyId: 'vendor-test', raSignature: nodeSign('sha256', csr, raKey.privateKey).toString('base64') }),
    });
    const body = await res.json() as { certificate: string; chain: string[] };
    expect(res.status, JSON.stringify(body)).to.equal(201);
    const leaf = Buffer.from(body.certificate, 'base64');
    writeFileSync(join(dir, 'cli-leaf.pem'), toPem('CERTIFICATE', leaf));
    writeFileSync(join(dir, 'cli-chain.pem'), toPem('CERTIFICATE', Buffer.from(body.chain[0], 'base64')));
    const v = await openssl('verify', '-x509_strict', '-CAfile', join(caDir, 'root.pem'), '-untrusted', join(dir, 'cli-chain.pem'), join(dir, 'cli-leaf.pem'));
    expect(v.code, v.out).to.equal(0);
    const issued = readFileSync(join(caDir, 'issued.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(issued.map((r: { serial: string }) => r.serial)).to.include(readCertInfo(leaf).serialHex);

    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGTERM');
    expect(await exited).to.equal(0);
  });
});
