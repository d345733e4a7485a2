import { expect } from 'chai';
import { createVerify } from 'node:crypto';
import { findSlotByLabel } from '@vbi/server/hsm/pkcs11-library';
import { spkiToKeyObject } from '@vbi/server/hsm/public-keys';
import { provisionToken, startModule, testLibrary, uniqueLabel } from '../helpers/hsm';

describe('module sessions', () => {
  const a = uniqueLabel('sess-a');
  const b = uniqueLabel('sess-b');
  before(async () => {
    await provisionToken(a);
    await provisionToken(b);
  });

  it('recovers when every session of the token is closed behind its back (CKR_SESSION_HANDLE_INVALID)', async () => {
    const m = await startModule(a);
    try {
      const before = await m.mac(Buffer.from('hello'));
      // C_CloseAllSessions: every pooled session handle becomes invalid and the login is gone
      findSlotByLabel(testLibrary(), a).closeAll();
      const after = await m.mac(Buffer.from('hello'));
      expect(after.equals(before)).to.equal(true);
      expect(m.status().state).to.equal('Idle');
      expect(await m.verifyMac(Buffer.from('hello'), after)).to.equal(true);
    } finally {
      await m.close();
    }
  });

  it('reconnects to the token (new sessions, self-tests again, same serial) and serves again', async () => {
    const m = await startModule(a);
    try {
      const first = m.status().selfTest?.ranAt;
      const mac = await m.mac(Buffer.from('x'));
      await new Promise((r) => setTimeout(r, 5));
      await m.reconnect();
      const st = m.status();
      expect(st.state).to.equal('Idle');
      expect(st.selfTest?.ok).to.equal(true);
      expect(st.selfTest?.ranAt).to.not.equal(first);
      expect((await m.mac(Buffer.from('x'))).equals(mac)).to.equal(true);
    } finally {
      await m.close();
    }
  });

  it('runs several modules (tokens) in one process, concurrently, each with its own keys', async () => {
    const ma = await startModule(a);
    const mb = await startModule(b);
    try {
      expect(ma.serial).to.not.equal(mb.serial);
      const data = Buffer.from('same input');
      const [macA, macB] = await Promise.all([ma.mac(data), mb.mac(data)]);
      expect(macA.equals(macB)).to.equal(false);
      // many operations in flight on one module use separate sessions from its pool
      const sigs = await Promise.all(Array.from({ length: 16 }, (_, i) => ma.identitySign(Buffer.from(`msg ${i}`))));
      expect(sigs.every((s) => s.length === 64)).to.equal(true);
      expect(ma.status().sessions).to.be.at.most(4);
    } finally {
      await ma.close();
      await mb.close();
    }
  });

  it('signs with a wrapped indicium key only inside the token (EC and RSA)', async () => {
    const m = await startModule(a);
    try {
      for (const algorithm of ['ec-p256', 'rsa-2048'] as const) {
        const { wrappedKey, publicKeySpki } = await m.generateIndiciumKey({ algorithm });
        const data = Buffer.from('indicium bytes');
        const sig = await m.signWithWrappedKey({ wrappedKey, algorithm, data });
        const ok = createVerify('sha256').update(data).verify(
          algorithm === 'ec-p256' ? { key: spkiToKeyObject(publicKeySpki), dsaEncoding: 'ieee-p1363' } : spkiToKeyObject(publicKeySpki), sig);
        expect(ok, algorithm).to.equal(true);
        // the wrapped key is useless to a module without the same KEK
        const mb = await startModule(b);
        try {
          const err = await mb.signWithWrappedKey({ wrappedKey, algorithm, data }).then(() => null, (e) => e);
          expect(err, algorithm).to.be.instanceOf(Error);
        } finally {
          await mb.close();
        }
      }
    } finally {
      await m.close();
    }
  });
});
