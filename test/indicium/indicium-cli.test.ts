import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { barcodePng } from '@vbi/core/indicium/render/barcode';
import { renderLabelPdf, renderLabelPng } from '@vbi/core/indicium/render/label';
import { encodeGrayPng } from '@vbi/core/indicium/render/png';
import { signIndicium, SignedIndicium } from '@vbi/core/indicium/sign';
import { isoDay, sampleFields } from '../helpers/indicium-fixtures';
import { createRootCa, issueIndiciumCertificate, randomSerial, TestCa } from '../helpers/throwaway-ca';

const CLI = require.resolve('@vbi/server/bin/verify');

/** The verify CLI run as a user would, in a child process. */
function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('indicium verify CLI', function () {
  this.timeout(120_000);
  let dir: string;
  let root: TestCa;
  let signed: SignedIndicium;
  const f = (name: string): string => join(dir, name);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vbi-indicium-cli-'));
    root = createRootCa(dir);
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const serial = randomSerial();
    const cert = issueIndiciumCertificate(dir, root, { spki: key.publicKey.export({ type: 'spki', format: 'der' }), serialHex: serial });
    writeFileSync(f('cert.der'), cert);
    mkdirSync(f('certs'));
    writeFileSync(f('certs/meter.der'), cert);
    writeFileSync(f('certs/readme.txt'), 'not a certificate');
    signed = await signIndicium({
      fields: sampleFields({ certSerial: serial, dateOfMailing: isoDay(0) }),
      sign: async (data) => sign('sha256', data, { key: key.privateKey, dsaEncoding: 'ieee-p1363' }),
    });
    const label = { indicium: signed.indicium, deliveryAddress: ['JANE DOE', '1 MAIN ST', 'NEW YORK NY 10001'] };
    writeFileSync(f('envelope.png'), await renderLabelPng({ ...label, size: 'envelope-10' }));
    writeFileSync(f('label.pdf'), await renderLabelPdf({ ...label, size: 'label-4x6' }));
    // A label whose art is itself a DataMatrix: the CLI must pick the symbol that is an indicium.
    const art = barcodePng(Buffer.from('NOT AN INDICIUM'), { dpi: 150 });
    const approvedArt = new Map([['dm-art', createHash('sha256').update(art).digest('hex')]]);
    writeFileSync(f('with-art.png'), await renderLabelPng({ ...label, size: 'label-4x6', art: { id: 'dm-art', png: art } }, { policy: { approvedArt } }));
    writeFileSync(f('blank.png'), encodeGrayPng({ width: 200, height: 100, pixels: new Uint8Array(20_000).fill(255), dpi: 300 }));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('verify label.png: VALID, fields printed, exit 0', () => {
    const r = cli('verify', f('envelope.png'), '--root', root.certPath, '--cert', f('cert.der'));
    expect(r.status, r.stderr).to.equal(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).to.equal('VALID');
    expect(r.stdout).to.contain('meter: M-000042').and.to.contain('value: $0.68 (680 mills)').and.to.contain(`digest: ${signed.digest.toString('hex')}`);
  });

  it('verify label.pdf (rendered with pdftoppm): VALID', () => {
    const r = cli('verify', f('label.pdf'), '--root', root.certPath, '--cert', f('cert.der'));
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout.split('\n')[0]).to.equal('VALID');
  });

  it('finds the indicium among other DataMatrix symbols on the label', () => {
    const r = cli('verify', f('with-art.png'), '--root', root.certPath, '--cert', f('cert.der'));
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout.split('\n')[0]).to.equal('VALID');
  });

  it('--payload BASE64 with --cert-dir and --json', () => {
    const r = cli('verify', '--payload', signed.indicium.toString('base64'), '--root', root.certPath, '--cert-dir', f('certs'), '--json');
    expect(r.status, r.stderr).to.equal(0);
    const out = JSON.parse(r.stdout);
    expect(out).to.include({ code: 'VALID', digest: signed.digest.toString('hex') });
    expect(out.fields).to.include({ meterId: 'M-000042', postage: 680 });
  });

  it('a changed byte: BAD_SIGNATURE, exit 1; garbage: MALFORMED, exit 1', () => {
    const tampered = Buffer.from(signed.indicium);
    tampered[30] ^= 0x04;
    const r = cli('verify', '--payload', tampered.toString('base64'), '--root', root.certPath, '--cert', f('cert.der'));
    expect([r.status, r.stdout.split('\n')[0]]).to.deep.equal([1, 'BAD_SIGNATURE']);
    const g = cli('verify', '--payload', Buffer.from('hello').toString('base64'), '--root', root.certPath, '--cert', f('cert.der'));
    expect([g.status, g.stdout.split('\n')[0]]).to.deep.equal([1, 'MALFORMED']);
  });

  it('another root: UNKNOWN_CERTIFICATE, exit 1', () => {
    const other = createRootCa(join(dir, 'other'), 'Other Root');
    const r = cli('verify', f('envelope.png'), '--root', other.certPath, '--cert', f('cert.der'));
    expect([r.status, r.stdout.split('\n')[0]]).to.deep.equal([1, 'UNKNOWN_CERTIFICATE']);
  });

  it('no barcode in the image: BARCODE_NOT_FOUND, exit 1', () => {
    const r = cli('verify', f('blank.png'), '--root', root.certPath, '--cert', f('cert.der'));
    expect(r.status).to.equal(1);
    expect(r.stderr).to.match(/^BARCODE_NOT_FOUND: /);
  });

  it('usage errors exit 2 with a code', () => {
    const noRoot = cli('verify', f('envelope.png'));
    expect([noRoot.status, noRoot.stderr.split(':')[0]]).to.deep.equal([2, 'BAD_REQUEST']);
    const both = cli('verify', f('envelope.png'), '--payload', 'AAAA', '--root', root.certPath);
    expect([both.status, both.stderr.split(':')[0]]).to.deep.equal([2, 'BAD_REQUEST']);
    const unknown = cli('verify', f('envelope.png'), '--root', root.certPath, '--frobnicate');
    expect([unknown.status, unknown.stderr.split(':')[0]]).to.deep.equal([2, 'BAD_REQUEST']);
  });
});
