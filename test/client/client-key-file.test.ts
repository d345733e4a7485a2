import { expect } from 'chai';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_KDF, KeyFile, KeyFileEnvelope } from '@vbi/client/client/key-file';

async function rejection(p: Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await p;
  } catch (e) {
    return e as { code?: string; message: string };
  }
  throw new Error('expected a rejection');
}

describe('client key file (scrypt + AES-256-GCM envelope)', () => {
  let dir: string;
  const state = { meterId: 'M-000042', hmk: Buffer.alloc(32, 7).toString('base64'), registers: { ascending: 0, descending: 20_000 } };
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vbi-keyfile-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('round trip: create, reopen with the password, save a new version', async () => {
    const path = join(dir, 'sub', 'key.json');
    const file = await KeyFile.create({ path, password: 'correct horse', state });
    expect(file.state).to.deep.equal(state);
    const again = await KeyFile.open<typeof state>({ path, password: 'correct horse' });
    expect(again.state).to.deep.equal(state);
    await again.save({ ...state, registers: { ascending: 680, descending: 19_320 } });
    const third = await KeyFile.open<typeof state>({ path, password: 'correct horse' });
    expect(third.state.registers).to.deep.equal({ ascending: 680, descending: 19_320 });
  });

  it('writes the documented envelope, mode 0600, nothing in clear, no temporary files left', async () => {
    const path = join(dir, 'key.json');
    await KeyFile.create({ path, password: 'pw-12345', state });
    const e = JSON.parse(readFileSync(path, 'utf8')) as KeyFileEnvelope;
    expect(Object.keys(e).sort()).to.deep.equal(['cipher', 'ciphertext', 'format', 'iv', 'kdf', 'salt', 'tag', 'version']);
    expect(e).to.include({ format: 'vbi-key-file', version: 1, cipher: 'aes-256-gcm' });
    expect(e.kdf).to.deep.equal({ name: 'scrypt', N: 32768, r: 8, p: 1, keyLength: 32 });
    expect(DEFAULT_KDF.N).to.equal(2 ** 15);
    expect(Buffer.from(e.salt, 'base64')).to.have.length(16);
    expect(Buffer.from(e.iv, 'base64')).to.have.length(12);
    expect(Buffer.from(e.tag, 'base64')).to.have.length(16);
    const text = readFileSync(path, 'utf8');
    expect(text).not.to.include('M-000042');
    expect(text).not.to.include(state.hmk);
    if (process.platform !== 'win32') expect(statSync(path).mode & 0o777).to.equal(0o600);
    expect(readdirSync(dir)).to.deep.equal(['key.json']);
  });

  it('a new IV on every save; the salt (and so the key) stays', async () => {
    const path = join(dir, 'key.json');
    const file = await KeyFile.create({ path, password: 'pw-12345', state });
    const a = JSON.parse(readFileSync(path, 'utf8')) as KeyFileEnvelope;
    await file.save(state);
    const b = JSON.parse(readFileSync(path, 'utf8')) as KeyFileEnvelope;
    expect(b.salt).to.equal(a.salt);
    expect(b.iv).not.to.equal(a.iv);
  });

  it('wrong password: WRONG_PASSWORD', async () => {
    const path = join(dir, 'key.json');
    await KeyFile.create({ path, password: 'right password', state });
    const e = await rejection(KeyFile.open({ path, password: 'wrong password' }));
    expect(e.code).to.equal('WRONG_PASSWORD');
    expect(e.message).to.match(/wrong password/);
  });

  const tampers: Array<[string, (e: KeyFileEnvelope) => void]> = [
    ['one ciphertext byte', (e) => {
      const c = Buffer.from(e.ciphertext, 'base64');
      c[3] ^= 1;
      e.ciphertext = c.toString('base64');
    }],
    ['the tag', (e) => {
      const t = Buffer.from(e.tag, 'base64');
      t[0] ^= 0x80;
      e.tag = t.toString('base64');
    }],
    ['the IV', (e) => {
      const t = Buffer.from(e.iv, 'base64');
      t[11] ^= 1;
      e.iv = t.toString('base64');
    }],
    ['the salt', (e) => {
      const t = Buffer.from(e.salt, 'base64');
      t[0] ^= 1;
      e.salt = t.toString('base64');
    }],
    ['the KDF cost (bound as AAD)', (e) => {
      e.kdf = { ...e.kdf, N: 2 ** 14 };
    }],
  ];
  for (const [what, tamper] of tampers) {
    it(`tampered ${what}: refused`, async () => {
      const path = join(dir, 'key.json');
      await KeyFile.create({ path, password: 'pw-12345', state });
      const e = JSON.parse(readFileSync(path, 'utf8')) as KeyFileEnvelope;
      tamper(e);
      writeFileSync(path, JSON.stringify(e));
      expect((await rejection(KeyFile.open({ path, password: 'pw-12345' }))).code).to.equal('WRONG_PASSWORD');
    });
  }

  it('structurally broken files and absurd KDF parameters are refused before any key derivation', async () => {
    const path = join(dir, 'key.json');
    await KeyFile.create({ path, password: 'pw-12345', state });
    const good = JSON.parse(readFileSync(path, 'utf8')) as KeyFileEnvelope;
    for (const bad of ['not json', JSON.stringify({ ...good, version: 2 }), JSON.stringify({ ...good, kdf: { ...good.kdf, N: 2 ** 30 } }),
      JSON.stringify({ ...good, kdf: { ...good.kdf, N: 30000 } }), JSON.stringify({ ...good, tag: 'AAAA' })]) {
      writeFileSync(path, bad);
      expect((await rejection(KeyFile.open({ path, password: 'pw-12345' }))).code, bad.slice(0, 40)).to.equal('BAD_REQUEST');
    }
  });

  it('never overwrites an existing key file on create; a missing file is NOT_REGISTERED', async () => {
    const path = join(dir, 'key.json');
    await KeyFile.create({ path, password: 'pw-12345', state });
    const before = readFileSync(path);
    expect((await rejection(KeyFile.create({ path, password: 'other', state: { other: true } }))).code).to.equal('BAD_REQUEST');
    expect(readFileSync(path).equals(before)).to.equal(true);
    expect(readdirSync(dir)).to.deep.equal(['key.json']);
    expect((await rejection(KeyFile.open({ path: join(dir, 'none.json'), password: 'x' }))).code).to.equal('NOT_REGISTERED');
  });

  it('the password is NFKC-normalised (the same password typed in another Unicode form)', async () => {
    const path = join(dir, 'key.json');
    await KeyFile.create({ path, password: 'caf\u00e9-pass', state });
    expect((await KeyFile.open<typeof state>({ path, password: 'cafe\u0301-pass' })).state).to.deep.equal(state);
  });
});
