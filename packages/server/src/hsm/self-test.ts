import { constants, createPublicKey, publicEncrypt } from 'node:crypto';
import * as graphene from 'graphene-pk11';
import * as ops from './async-ops';
import { aesGcm, des3Cbc, keyWrapPad, macMechanism, P256_PARAMS, PackageSuite, rsaOaep } from './mechanisms';
import { rsaPublicKeySpki } from './public-keys';

/**
 * Power-on self-tests (WO 99/41690, "Finite State Machine"): known-answer tests for every
 * symmetric mechanism the module uses, computed by the token with keys of known value, and
 * pairwise-consistency tests (sign, then verify) for EC P-256 and RSA key pairs generated for
 * the test. A mismatch puts the module into the Error state.
 *
 * Vectors come from published sources so that a wrong constant cannot hide a wrong token:
 * AES-GCM: GCM specification test case 16; AES-CMAC: NIST SP 800-38B, AES-256 example 2;
 * SHA-256: FIPS 180-2 "abc"; HMAC-SHA256: RFC 4231 case 6 (SoftHSM2 refuses HMAC keys shorter
 * than the digest, so case 1's 20-byte key is out). AES key wrap with padding: the RFC 3394
 * section 4.6 key and KEK wrapped per RFC 5649 by OpenSSL; not RFC 5649's own 20-byte example,
 * because SoftHSM2 2.6.1 (CKM_AES_KEY_WRAP_PAD) agrees with RFC 5649 only for key data whose length
 * is a multiple of 8 (packages/server/hsm/README.md). 3DES-CBC and DES3-CMAC answers were produced with OpenSSL.
 * RSA-2048: a PKCS#1 v1.5 SHA-256 signature made with OpenSSL, verified by the token.
 *
 * By suite and mode (the token profile): only the configured package suite's tests run (3DES
 * only for legacy-3des); on a token that refuses clear keys (profile clearKeyImport=false, FIPS
 * mode) the keys of known value reach the token by RSA-OAEP unwrap under a key pair generated in
 * the token for the test, never by C_CreateObject. RSA-2048 (indicium keys of that algorithm) is
 * optional: its failure disables that algorithm only; any other failure puts the module in Error.
 */
export interface KatVectors {
  aesGcm: { key: string; iv: string; aad: string; plaintext: string; ciphertextAndTag: string };
  aesCmac: { key: string; message: string; mac: string };
  aesKeyWrapPad: { kek: string; keyData: string; wrapped: string };
  des3Cbc: { key: string; iv: string; plaintext: string; ciphertext: string };
  des3Cmac: { key: string; message: string; mac: string };
  sha256: { message: string; digest: string };
  hmacSha256: { key: string; message: string; mac: string };
  rsaPkcs1Sha256: { modulus: string; message: string; signature: string };
}

export const KAT_VECTORS: KatVectors = {
  aesGcm: {
    key: 'feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308',
    iv: 'cafebabefacedbaddecaf888',
    aad: 'feedfacedeadbeeffeedfacedeadbeefabaddad2',
    plaintext:
      'd9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39',
    ciphertextAndTag:
      '522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662' +
      '76fc6ece0f4e1768cddf8853bb2d551b',
  },
  aesCmac: {
    key: '603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4',
    message: '6bc1bee22e409f96e93d7e117393172a',
    mac: '28a7023f452e8f82bd4bf28d8c37c35c',
  },
  aesKeyWrapPad: {
    kek: '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f',
    keyData: '00112233445566778899aabbccddeeff000102030405060708090a0b0c0d0e0f',
    wrapped: '4a8029243027353b0694cf1bd8fc745bb0ce8a739b19b1960b12426d4c39cfeda926d103ab34e9f6',
  },
  des3Cbc: {
    key: '0123456789abcdef23456789abcdef01456789abcdef0123',
    iv: '1234567890abcdef',
    plaintext: '6bc1bee22e409f96e93d7e117393172a',
    ciphertext: '9d50047a85efb2057a51e45711dae039',
  },
  des3Cmac: {
    key: '0123456789abcdef23456789abcdef01456789abcdef0123',
    message: '6bc1bee22e409f96e93d7e117393172a',
    mac: '30239cf1f52e6609',
  },
  sha256: { message: '616263', digest: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad' },
  hmacSha256: {
    key: 'aa'.repeat(131),
    message: Buffer.from('Test Using Larger Than Block-Size Key - Hash Key First').toString('hex'),
    mac: '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54',
  },
  rsaPkcs1Sha256: {
    modulus:
      'c2312aeca2e2f3dcc545bf81d9e516696569f087023cea6849404cc4c548f99df9a50aa22f3a25bed0c09b487170f5aec4da85d27d26c07cc6d6e1f613cbd4b1b6b81bf3ac6a4308568a1cb2ef337fe300a4e777d19b3889c8566d81ba098211217cbea1d0efa0134854e81497a717206f41870dfa493476c64751010f2f81ce9261e7f4395d242103f578444bc698545d0a9f5292e436299c23ff3a98a96f6c8e8fbbf00a91c90624a8ddd3f53bb8c09f62f4bae207ea1ab335e39a344205c502e5f7a80a971d3f7d241bb9be2ae13296aa5ec10a640d5ed1f63dc0e837255fe0d78d6f8f1f951e4f94cf7b1fe63b28d9abf7ce0a8f3088c822d0bbb3c02835',
    message: '7662692073656c662d74657374205253412d3230343820504b435323312076312e35205348412d323536',
    signature:
      'aaf126f5740a87c70fb1efec961943a258d309502f7d492d2fc7cbcadeeacf94de1106b77d95416b3c4625e33ec62e889ed00861958290ab6115c2e891a5deaf8b683315d47d7bfff617d54cda378e7313d378933d847e9c110367ee7cf9d50b7b6c14a8fdbbd91bef217964a565830e665af3cef76496ce487e409b6e3344a9ed903f7ef13d32b6b3d35abca3c5e62c80aaab8eb097699158e7ac9324b1b2d65d6985ed95fcb31a9204d3bca8b9681e6bc4f24f7acdccfca5f05ec26fc01fc536f201ed31fca40e33e12b9dc97fa25d76836811057c8ded0ee81a2532de0bef5fc339fdbb4219f1bdc52919d8628da0e6400ffed3594c75aef950c1d102b1b3',
  },
};

/** Algorithms a failed optional test disables (the module keeps serving everything else). */
export type OptionalAlgorithm = 'rsa-2048';

export interface SelfTestResult { name: string; ok: boolean; detail?: string; optional?: OptionalAlgorithm }
export interface SelfTestReport {
  ok: boolean;
  results: SelfTestResult[];
  /** Optional algorithms whose test failed: refused by the module from now on. */
  disabled: OptionalAlgorithm[];
  /** How keys of known value reached the token. */
  keyImport: 'create-object' | 'rsa-oaep-unwrap';
  ranAt: string;
  ms: number;
}

export interface SelfTestOptions {
  suite: PackageSuite;
  wrapMechanism: number;
  oaepHash: 'sha1' | 'sha256';
  /** False: never C_CreateObject a secret key value (profile clearKeyImport). */
  clearKeyImport: boolean;
}

const hex = (s: string) => Buffer.from(s, 'hex');

type KnownKey = (keyType: graphene.KeyType, value: string, usage: graphene.ITemplate) => Promise<graphene.SecretKey>;

/** Keys of known value as public session objects made with C_CreateObject. */
function createdKeys(session: graphene.Session): KnownKey {
  return async (keyType, value, usage) => session.create({
    class: graphene.ObjectClass.SECRET_KEY, keyType, token: false, private: false, sensitive: true,
    value: hex(value), label: 'vbi.selftest', ...usage,
  }).toType<graphene.SecretKey>();
}

/**
 * Keys of known value unwrapped (RSA-OAEP) under an RSA-2048 key pair generated in the token for
 * this run: the value is encrypted host-side to the pair's public key, so it never enters the
 * token in clear and no C_CreateObject of a secret key is needed.
 */
async function unwrappedKeys(session: graphene.Session, oaepHash: 'sha1' | 'sha256', made: graphene.SessionObject[]): Promise<KnownKey> {
  const kp = await ops.generateKeyPair(session, 'RSA_PKCS_KEY_PAIR_GEN',
    { keyType: graphene.KeyType.RSA, token: false, private: false, modulusBits: 2048, publicExponent: Buffer.from([1, 0, 1]), encrypt: true, wrap: true, verify: false },
    { keyType: graphene.KeyType.RSA, token: false, private: true, sensitive: true, extractable: false, decrypt: true, unwrap: true, sign: false });
  made.push(kp.privateKey, kp.publicKey);
  const pub = createPublicKey({ key: rsaPublicKeySpki(kp.publicKey), format: 'der', type: 'spki' });
  return async (keyType, value, usage) => {
    const ct = publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash }, hex(value));
    return (await ops.unwrapKey(session, rsaOaep(oaepHash), kp.privateKey, ct, {
      class: graphene.ObjectClass.SECRET_KEY, keyType, token: false, private: true, sensitive: true, extractable: false,
      label: 'vbi.selftest', ...usage,
    })).toType<graphene.SecretKey>();
  };
}

type Test = (s: graphene.Session, known: KnownKey) => Promise<void>;

function expectEqual(got: Buffer, want: string, what: string): void {
  if (!got.equals(hex(want))) throw new Error(`${what}: got ${got.toString('hex')}, want ${want}`);
}

interface TestSpec { name: string; run: Test; suites?: PackageSuite[]; optional?: OptionalAlgorithm }

function tests(v: KatVectors, wrapMechanism: number): TestSpec[] {
  return [
    { name: 'KAT AES-256-GCM', suites: ['aes'], run: async (s, known) => {
      const k = await known(graphene.KeyType.AES, v.aesGcm.key, { encrypt: true, decrypt: true });
      try {
        const ct = await ops.encrypt(s, aesGcm(hex(v.aesGcm.iv), hex(v.aesGcm.aad)), k, hex(v.aesGcm.plaintext));
        expectEqual(ct, v.aesGcm.ciphertextAndTag, 'encrypt');
        const pt = await ops.decrypt(s, aesGcm(hex(v.aesGcm.iv), hex(v.aesGcm.aad)), k, ct);
        expectEqual(pt, v.aesGcm.plaintext, 'decrypt');
      } finally { ops.destroyQuietly(k); }
    } },
    { name: 'KAT AES-256-CMAC', suites: ['aes'], run: async (s, known) => {
      const k = await known(graphene.KeyType.AES, v.aesCmac.key, { sign: true, verify: true });
      try { expectEqual(await ops.sign(s, 'AES_CMAC', k, hex(v.aesCmac.message)), v.aesCmac.mac, 'mac'); } finally { ops.destroyQuietly(k); }
    } },
    { name: 'KAT AES key wrap with padding (RFC 5649)', run: async (s, known) => {
      const kek = await known(graphene.KeyType.AES, v.aesKeyWrapPad.kek, { wrap: true, unwrap: true });
      let key: graphene.SecretKey | undefined;
      try {
        key = await known(graphene.KeyType.GENERIC_SECRET, v.aesKeyWrapPad.keyData, { extractable: true });
        expectEqual(await ops.wrapKey(s, keyWrapPad(wrapMechanism), kek, key), v.aesKeyWrapPad.wrapped, 'wrap');
      } finally { ops.destroyQuietly(kek); ops.destroyQuietly(key); }
    } },
    { name: 'KAT 3DES-CBC', suites: ['legacy-3des'], run: async (s, known) => {
      const k = await known(graphene.KeyType.DES3, v.des3Cbc.key, { encrypt: true, decrypt: true });
      try {
        const ct = await ops.encrypt(s, { name: 'DES3_CBC', params: hex(v.des3Cbc.iv) }, k, hex(v.des3Cbc.plaintext));
        expectEqual(ct, v.des3Cbc.ciphertext, 'encrypt');
        // the padded variant the legacy suite uses must round-trip too
        const padded = await ops.encrypt(s, des3Cbc(hex(v.des3Cbc.iv)), k, hex(v.des3Cbc.plaintext));
        expectEqual(await ops.decrypt(s, des3Cbc(hex(v.des3Cbc.iv)), k, padded), v.des3Cbc.plaintext, 'pad round trip');
      } finally { ops.destroyQuietly(k); }
    } },
    { name: 'KAT DES3-CMAC', suites: ['legacy-3des'], run: async (s, known) => {
      const k = await known(graphene.KeyType.DES3, v.des3Cmac.key, { sign: true, verify: true });
      try { expectEqual(await ops.sign(s, macMechanism('legacy-3des'), k, hex(v.des3Cmac.message)), v.des3Cmac.mac, 'mac'); } finally { ops.destroyQuietly(k); }
    } },
    { name: 'KAT SHA-256', run: async (s) => {
      expectEqual(await ops.digest(s, 'SHA256', hex(v.sha256.message)), v.sha256.digest, 'digest');
    } },
    { name: 'KAT HMAC-SHA256', run: async (s, known) => {
      const k = await known(graphene.KeyType.GENERIC_SECRET, v.hmacSha256.key, { sign: true, verify: true });
      try { expectEqual(await ops.sign(s, 'SHA256_HMAC', k, hex(v.hmacSha256.message)), v.hmacSha256.mac, 'mac'); } finally { ops.destroyQuietly(k); }
    } },
    { name: 'pairwise EC P-256 sign/verify', run: async (s) => {
      const kp = await ops.generateKeyPair(s, 'EC_KEY_PAIR_GEN',
        { keyType: graphene.KeyType.EC, token: false, private: false, paramsEC: P256_PARAMS, verify: true },
        { keyType: graphene.KeyType.EC, token: false, private: true, sensitive: true, sign: true });
      try { await pairwise(s, 'ECDSA', kp, Buffer.alloc(32, 0x5a)); } finally { ops.destroyQuietly(kp.privateKey); ops.destroyQuietly(kp.publicKey); }
    } },
    { name: 'KAT RSA-2048 PKCS#1 v1.5 SHA-256 verify', optional: 'rsa-2048', run: async (s) => {
      const pub = s.create({
        class: graphene.ObjectClass.PUBLIC_KEY, keyType: graphene.KeyType.RSA, token: false, private: false,
        modulus: hex(v.rsaPkcs1Sha256.modulus), publicExponent: Buffer.from([1, 0, 1]), verify: true, label: 'vbi.selftest',
      }).toType<graphene.PublicKey>();
      try {
        if (!(await ops.verify(s, 'SHA256_RSA_PKCS', pub, hex(v.rsaPkcs1Sha256.message), hex(v.rsaPkcs1Sha256.signature)))) {
          throw new Error('the known signature does not verify');
        }
      } finally { ops.destroyQuietly(pub); }
    } },
    { name: 'pairwise RSA-2048 sign/verify', optional: 'rsa-2048', run: async (s) => {
      const kp = await ops.generateKeyPair(s, 'RSA_PKCS_KEY_PAIR_GEN',
        { keyType: graphene.KeyType.RSA, token: false, private: false, modulusBits: 2048, publicExponent: Buffer.from([1, 0, 1]), verify: true },
        { keyType: graphene.KeyType.RSA, token: false, private: true, sensitive: true, sign: true });
      try { await pairwise(s, 'SHA256_RSA_PKCS', kp, Buffer.from('vbi pairwise consistency')); } finally { ops.destroyQuietly(kp.privateKey); ops.destroyQuietly(kp.publicKey); }
    } },
  ];
}

async function pairwise(s: graphene.Session, mech: graphene.MechanismType, kp: graphene.IKeyPair, data: Buffer): Promise<void> {
  const sig = await ops.sign(s, mech, kp.privateKey, data);
  if (!(await ops.verify(s, mech, kp.publicKey, data, sig))) throw new Error('signature does not verify');
  const flipped = Buffer.from(data);
  flipped[0] ^= 1;
  if (await ops.verify(s, mech, kp.publicKey, flipped, sig)) throw new Error('signature verifies over altered data');
}

/**
 * Runs the tests of the configured suite in order; one failure does not stop the others, so the
 * report is complete. `ok` is false when a required test failed.
 */
export async function runSelfTests(session: graphene.Session, vectors: KatVectors, opts: SelfTestOptions): Promise<SelfTestReport> {
  const started = Date.now();
  const results: SelfTestResult[] = [];
  const made: graphene.SessionObject[] = [];
  try {
    let known: KnownKey | undefined;
    let importFailure: string | undefined;
    try {
      known = opts.clearKeyImport ? createdKeys(session) : await unwrappedKeys(session, opts.oaepHash, made);
    } catch (e) {
      importFailure = e instanceof Error ? e.message : String(e);
    }
    for (const t of tests(vectors, opts.wrapMechanism)) {
      if (t.suites && !t.suites.includes(opts.suite)) continue;
      try {
        if (!known) throw new Error(`keys of known value cannot be made: ${importFailure}`);
        await t.run(session, known);
        results.push({ name: t.name, ok: true, ...(t.optional ? { optional: t.optional } : {}) });
      } catch (e) {
        results.push({ name: t.name, ok: false, detail: e instanceof Error ? e.message : String(e), ...(t.optional ? { optional: t.optional } : {}) });
      }
    }
  } finally {
    for (const o of made) ops.destroyQuietly(o);
  }
  const disabled = [...new Set(results.filter((r) => !r.ok && r.optional).map((r) => r.optional as OptionalAlgorithm))];
  return {
    ok: results.every((r) => r.ok || r.optional),
    results,
    disabled,
    keyImport: opts.clearKeyImport ? 'create-object' : 'rsa-oaep-unwrap',
    ranAt: new Date(started).toISOString(),
    ms: Date.now() - started,
  };
}
