import { createHash, createPublicKey, randomBytes } from 'node:crypto';
import * as graphene from 'graphene-pk11';
import * as pkcs11 from 'pkcs11js';
import { vbiError, VbiError } from '../errors';
import { HsmConfig, ModuleConfig } from './hsm-config';
import { ApprovalCheck, DataObject, HsmModule, IndiciumKeyAlgorithm, KeyRef, KeyScope, ModuleStatus } from './hsm-module';
import { readApprovers } from './officer-keys';
import { LibraryHandle, findSlotByLabel } from './pkcs11-library';
import { TokenSession, openSession } from './token-session';
import { ModuleStateMachine } from './module-state';
import { KAT_VECTORS, KatVectors, SelfTestReport, runSelfTests } from './self-test';
import { KeyRole, roleLabel, secretKeyTemplate, SESSION_KEY_TEMPLATES, sessionTemplate } from './key-templates';
import {
  aesGcm, des3Cbc, DES3_IV_BYTES, GCM_IV_BYTES, keyWrapPad, macMechanism, P256_PARAMS, PackageSuite, rsaOaep,
} from './mechanisms';
import { ckr, isDeviceError, isRecoverable, toVbiError } from './pkcs11-errors';
import { ecPublicKeySpki, rsaPublicKeySpki } from './public-keys';
import * as ops from './async-ops';
import { TokenCall, tokenError } from './token-threads';
import { DATA_APPLICATION } from './data-objects';
import { ProbeReport, probeToken } from './token-probe';
import { TokenProfile, serialFromIdentity } from './token-profile';

/** HMAC-SHA256 output: request MACs and dynamic passwords. */
const HMAC_BYTES = 32;


export interface CryptoModuleOptions {
  library: LibraryHandle;
  module: ModuleConfig;
  /** wrapMechanism and oaepHash default to the library's token profile. */
  hsm: Pick<HsmConfig, 'suite' | 'sessionPoolSize'> & Partial<Pick<HsmConfig, 'wrapMechanism' | 'oaepHash'>>;
  /** Replaced only by tests that prove a failed KAT puts the module into Error. */
  vectors?: KatVectors;
  /**
   * Tests only: attributes added to the private-key template of a new indicium key while it
   * returns them, to make the token refuse one request's template (the module must stay in service).
   */
  indiciumTemplateFault?: () => graphene.ITemplate | undefined;
  clock?: () => Date;
}

interface KeyHandles {
  kek: graphene.SecretKey;
  enc: graphene.SecretKey;
  mac: graphene.SecretKey;
  identity: graphene.PrivateKey;
  identityPub: graphene.PublicKey;
  transportPub: graphene.PublicKey;
}

/**
 * The cryptographic module: one PKCS#11 token used in the Crypto-User role. The only service
 * code that calls PKCS#11. Sessions come from a pool; a lost session, a lost login or stale
 * object handles are recovered once per call by reopening, logging in again and finding the
 * keys again; a device error puts the module into Error until `reconnect()` succeeds.
 */
/** EC: raw r||s ECDSA over SHA-256(data); RSA: PKCS#1 v1.5 with SHA-256. */
function signIndiciumData(s: graphene.Session, key: graphene.Key, algorithm: IndiciumKeyAlgorithm, data: Buffer): Promise<Buffer> {
  return algorithm === 'ec-p256' ? ops.sign(s, 'ECDSA', key, sha256(data)) : ops.sign(s, 'SHA256_RSA_PKCS', key, data);
}

export class CryptoModule implements HsmModule {
  readonly tokenLabel: string;
  readonly suite: PackageSuite;
  private readonly wrapMechanism: number;
  private readonly oaepHash: 'sha1' | 'sha256';
  private readonly profile: TokenProfile;
  private _serial = '';
  private readonly fsm: ModuleStateMachine;
  private readonly session: TokenSession;
  private slot: graphene.Slot | undefined;
  private keys: KeyHandles | undefined;
  private identitySpki: Buffer | undefined;
  private transportSpki: Buffer | undefined;
  private selfTest: SelfTestReport | null = null;
  private probe: ProbeReport | null = null;
  private _unsuitable: string | undefined;
  private inFlight = 0;
  private transportModulus: number | undefined;
  /** Length of a 32-byte key wrapped with the configured mechanism (measured once). */
  private wrappedLength32: number | undefined;

  private constructor(private readonly opts: CryptoModuleOptions) {
    this.tokenLabel = opts.module.tokenLabel;
    this.suite = opts.hsm.suite;
    this.wrapMechanism = opts.hsm.wrapMechanism ?? opts.library.profile.wrapMechanism;
    this.oaepHash = opts.hsm.oaepHash ?? opts.library.profile.oaepHash;
    this.profile = opts.library.profile;
    this.fsm = new ModuleStateMachine(opts.clock);
    this.session = new TokenSession({
      tokenLabel: this.tokenLabel,
      pin: opts.module.userPin,
      userType: opts.module.userType as graphene.UserType,
      open: () => this.openSession(),
      poolSize: opts.hsm.sessionPoolSize,
      relogin: 'on-recovery',
      afterLogin: (s) => {
        this.keys = this.findKeys(s);
      },
      // weak key attributes: the token ignored CKA_SENSITIVE / CKA_EXTRACTABLE on unwrap, so no key is safe on it
      closesSession: (e) => isWeakKeys(e) || (!(e instanceof VbiError) && isDeviceError(e)),
      onFailure: (e, what) => {
        if (isWeakKeys(e)) this.fsm.to('Error', `${what}: ${e.message}`);
        else if (!(e instanceof VbiError) && isDeviceError(e)) this.fsm.to('Error', `${what}: device error ${(e as Error).message}`);
      },
    });
  }

  /**
   * Powers the module on: self-tests, login, key entry. Never throws for a failed self-test
   * or a missing key: the module comes back in the Error state and says why in status().
   */
  static async start(opts: CryptoModuleOptions): Promise<CryptoModule> {
    const m = new CryptoModule(opts);
    await m.powerOn();
    return m;
  }

  get serial(): string {
    return this._serial;
  }

  status(): ModuleStatus {
    return {
      tokenLabel: this.tokenLabel,
      serial: this._serial,
      library: this.opts.library.path,
      state: this.fsm.state,
      reason: this.fsm.reason,
      since: this.fsm.since.toISOString(),
      suite: this.suite,
      selfTest: this.selfTest,
      probe: this.probe,
      profile: this.profile.name,
      sessions: this.session.pool.size,
    };
  }

  private async powerOn(): Promise<void> {
    try {
      this.slot = findSlotByLabel(this.opts.library, this.tokenLabel);
      if (this.profile.serialSource === 'token') this._serial = this.slot.getToken().serialNumber.trim();
    } catch (e) {
      return this.fail(e, 'token not found');
    }
    // SoftHSM2 generates key pairs (pairwise tests) only for a logged-in user, so the service
    // role logs in first; no module key is touched before every test has passed.
    let session: graphene.Session | undefined;
    try {
      session = await this.session.pool.acquire();
      this.session.login(session);
      this.selfTest = await runSelfTests(session, this.opts.vectors ?? KAT_VECTORS, {
        suite: this.suite, wrapMechanism: this.wrapMechanism, oaepHash: this.oaepHash, clearKeyImport: this.profile.clearKeyImport,
      });
    } catch (e) {
      if (session) this.session.pool.release(session, true);
      return this.fail(e, 'self-test could not run');
    }
    this.session.pool.release(session);
    if (!this.selfTest.ok) {
      const failed = this.selfTest.results.filter((r) => !r.ok).map((r) => `${r.name}: ${r.detail}`);
      this.fsm.to('Error', `self-test failed: ${failed.join('; ')}`);
      return;
    }
    this.fsm.to('UnInitialized');
    try {
      await this.keyEntry();
    } catch (e) {
      this.fail(e, 'key entry failed');
    }
  }

  /**
   * Login as the service role, find every module key, check the suite, probe the token against
   * its profile (src/hsm/token-probe.ts), go Idle. A failed required probe check is an Error
   * with reason 'token unsuitable' (the service refuses to start on it).
   */
  private async keyEntry(): Promise<void> {
    this.fsm.to('KeyEntry');
    const s = await this.session.pool.acquire();
    try {
      this.session.login(s);
      this.keys = this.findKeys(s);
      this.identitySpki = ecPublicKeySpki(this.keys.identityPub);
      this.transportSpki = rsaPublicKeySpki(this.keys.transportPub);
      if (this.profile.serialSource === 'identity-key') this._serial = serialFromIdentity(this.identitySpki);
      if (!this._serial) throw vbiError('TOKEN_UNSUITABLE', `token '${this.tokenLabel}' reports a blank serial number: use a token profile with serialSource identity-key`);
      this.probe = await probeToken(this.slot as graphene.Slot, {
        profile: this.profile, suite: this.suite, wrapMechanism: this.wrapMechanism, oaepHash: this.oaepHash,
        transport: { privateKey: this.transportPrivate(s) as graphene.PrivateKey, publicKey: this.keys.transportPub },
      });
      if (!this.probe.ok) {
        const failed = this.probe.checks.filter((c) => !c.ok && c.required).map((c) => `${c.name}: ${c.detail}${c.ckr ? ` [${c.ckr}]` : ''}`);
        throw vbiError('TOKEN_UNSUITABLE', `token '${this.tokenLabel}' does not fit profile '${this.profile.name}': ${failed.join('; ')}`);
      }
      // conditional self-test of the long-term identity key (pairwise consistency)
      const probe = randomBytes(32);
      const sig = await ops.sign(s, 'ECDSA', this.keys.identity, probe);
      if (!(await ops.verify(s, 'ECDSA', this.keys.identityPub, probe, sig))) {
        throw vbiError('MODULE_ERROR', 'identity key pairwise-consistency test failed');
      }
    } catch (e) {
      this.session.pool.release(s, true);
      throw e;
    }
    this.session.pool.release(s);
    this.fsm.to('Idle');
  }

  private fail(e: unknown, what: string): void {
    const err = toVbiError(e, what);
    if (err.code === 'TOKEN_UNSUITABLE' || err.code === 'KEY_ATTRIBUTES_WEAK') this._unsuitable = err.message;
    this.fsm.to('Error', `${what}: ${err.message}`);
  }

  /** Why the token cannot be used safely (a failed probe check, a blank serial), or undefined. */
  get unsuitable(): string | undefined {
    return this._unsuitable;
  }

  private openSession(): graphene.Session {
    if (!this.slot) throw vbiError('MODULE_NOT_READY', 'no slot');
    return openSession(this.slot);
  }

  private findKeys(s: graphene.Session): KeyHandles {
    const one = (role: KeyRole, cls: graphene.ObjectClass) => {
      const found = s.find({ class: cls, label: roleLabel(role) });
      if (found.length !== 1) {
        throw vbiError('KEY_MISSING', `token '${this.tokenLabel}' has ${found.length} objects for ${role} (${roleLabel(role)})`);
      }
      return found.items(0);
    };
    const keys: KeyHandles = {
      kek: one('package-kek', graphene.ObjectClass.SECRET_KEY).toType(),
      enc: one('package-enc', graphene.ObjectClass.SECRET_KEY).toType(),
      mac: one('package-mac', graphene.ObjectClass.SECRET_KEY).toType(),
      identity: one('module-identity', graphene.ObjectClass.PRIVATE_KEY).toType(),
      identityPub: one('module-identity', graphene.ObjectClass.PUBLIC_KEY).toType(),
      transportPub: one('module-transport', graphene.ObjectClass.PUBLIC_KEY).toType(),
    };
    const transportPrivate = one('module-transport', graphene.ObjectClass.PRIVATE_KEY);
    // A long-term key that reads back exportable is not one the service may use (the ceremony
    // refuses to make one; this catches a token provisioned otherwise).
    const weak: string[] = [];
    for (const [role, key] of [['package-kek', keys.kek], ['package-enc', keys.enc], ['package-mac', keys.mac],
      ['module-identity', keys.identity], ['module-transport', transportPrivate]] as const) {
      const a = key.getAttribute({ sensitive: null, extractable: null, private: null }) as { sensitive?: boolean; extractable?: boolean; private?: boolean };
      let wrapWithTrusted = false;
      try { wrapWithTrusted = key.getAttribute('wrapWithTrusted') === true; } catch { /* attribute unknown to the token */ }
      if (a.sensitive !== true) weak.push(`${role}: not sensitive`);
      if (a.private !== true) weak.push(`${role}: not private`);
      if (a.extractable === true && !wrapWithTrusted) weak.push(`${role}: extractable without CKA_WRAP_WITH_TRUSTED`);
    }
    if (weak.length) throw vbiError('KEY_ATTRIBUTES_WEAK', `token '${this.tokenLabel}': ${weak.join('; ')}`);
    // The key types must be those of the configured suite, or every package would fail to open.
    for (const [role, key] of [['package-enc', keys.enc], ['package-mac', keys.mac]] as const) {
      const want = secretKeyTemplate(role, this.suite).keyType;
      if (key.getAttribute('keyType') !== want) {
        throw vbiError('CONFIG_INVALID', `${role} on '${this.tokenLabel}' is not a key of suite '${this.suite}'`);
      }
    }
    return keys;
  }

  private assertServing(): void {
    const st = this.fsm.state;
    if (st === 'Idle' || st === 'User') return;
    if (st === 'Error') throw vbiError('MODULE_ERROR', `module '${this.tokenLabel}' is in Error: ${this.fsm.reason}`);
    throw vbiError('MODULE_NOT_READY', `module '${this.tokenLabel}' is ${st}`);
  }

  /**
   * Runs one operation with a pooled session and the key handles. A recoverable PKCS#11 error
   * triggers one recovery (new sessions, login, key handles) and one retry; a device error
   * puts the module into Error.
   */
  private async run<T>(what: string, op: (s: graphene.Session, k: KeyHandles) => Promise<T> | T): Promise<T> {
    this.assertServing();
    this.inFlight++;
    if (this.fsm.state === 'Idle') this.fsm.to('User');
    try {
      return await this.session.run(what, (s) => op(s, this.keys as KeyHandles));
    } finally {
      this.inFlight--;
      if (this.inFlight === 0 && this.fsm.state === 'User') this.fsm.to('Idle');
    }
  }

  /** After a device error: find the token again (same serial), self-test, key entry. */
  async reconnect(): Promise<void> {
    if (this.inFlight > 0) throw vbiError('MODULE_NOT_READY', 'operations in flight');
    this.session.pool.invalidate();
    this.keys = undefined;
    // keys are dropped (UnInitialized) before the power-on sequence runs again
    if (this.fsm.state !== 'Error') this.fsm.to('UnInitialized');
    this.fsm.to('SelfTest');
    const serial = this._serial;
    await this.powerOn();
    if (serial && this._serial !== serial) {
      this.fsm.to('Error', `token '${this.tokenLabel}' now has serial ${this._serial}, expected ${serial}`);
    }
  }

  // --- package keys -------------------------------------------------------------------

  async encryptSecrets(req: { plaintext: Buffer; aad: Buffer }): Promise<Buffer> {
    return this.run('encrypt package secrets', async (s, k) => {
      if (this.suite === 'aes') {
        const iv = randomBytes(GCM_IV_BYTES);
        const ct = await ops.encrypt(s, aesGcm(iv, req.aad), k.enc, req.plaintext);
        return Buffer.concat([iv, ct]);
      }
      // 3DES-CBC has no AAD: the package MAC binds the ciphertext to the public fields instead.
      const iv = randomBytes(DES3_IV_BYTES);
      const ct = await ops.encrypt(s, des3Cbc(iv), k.enc, req.plaintext);
      return Buffer.concat([iv, ct]);
    });
  }

  async decryptSecrets(req: { ciphertext: Buffer; aad: Buffer }): Promise<Buffer> {
    return this.run('decrypt package secrets', async (s, k) => {
      const ivLen = this.suite === 'aes' ? GCM_IV_BYTES : DES3_IV_BYTES;
      if (req.ciphertext.length <= ivLen) throw vbiError('PACKAGE_DECRYPT_FAILED', 'secret section too short');
      const iv = req.ciphertext.subarray(0, ivLen);
      const body = req.ciphertext.subarray(ivLen);
      const mech = this.suite === 'aes' ? aesGcm(Buffer.from(iv), req.aad) : des3Cbc(Buffer.from(iv));
      try {
        return await ops.decrypt(s, mech, k.enc, Buffer.from(body));
      } catch (e) {
        const c = ckr(e);
        if (c === pkcs11.CKR_ENCRYPTED_DATA_INVALID || c === pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE) {
          throw vbiError('PACKAGE_DECRYPT_FAILED', 'secret section does not decrypt');
        }
        throw e;
      }
    });
  }

  async mac(data: Buffer): Promise<Buffer> {
    return this.run('mac', (s, k) => ops.sign(s, macMechanism(this.suite), k.mac, data));
  }

  async verifyMac(data: Buffer, mac: Buffer): Promise<boolean> {
    return this.run('verify mac', (s, k) => ops.verify(s, macMechanism(this.suite), k.mac, data, mac));
  }

  // --- indicium keys ------------------------------------------------------------------

  /** An optional algorithm whose self-test failed is refused (ALGORITHM_DISABLED). */
  private assertEnabled(algorithm: IndiciumKeyAlgorithm): void {
    if (algorithm === 'rsa-2048' && this.selfTest?.disabled.includes('rsa-2048')) {
      throw vbiError('ALGORITHM_DISABLED', `module '${this.tokenLabel}': RSA-2048 indicium keys are disabled by the self-test`);
    }
  }

  async generateIndiciumKey(req: { algorithm: IndiciumKeyAlgorithm }): Promise<{ wrappedKey: Buffer; publicKeySpki: Buffer }> {
    this.assertEnabled(req.algorithm);
    return this.run('generate indicium key', async (s, k) => {
      const t = SESSION_KEY_TEMPLATES['indicium-generate'];
      const ec = req.algorithm === 'ec-p256';
      const kp = await ops.generateKeyPair(
        s,
        ec ? 'EC_KEY_PAIR_GEN' : 'RSA_PKCS_KEY_PAIR_GEN',
        ec
          ? { keyType: graphene.KeyType.EC, paramsEC: P256_PARAMS, ...t.publicAttributes }
          : { keyType: graphene.KeyType.RSA, modulusBits: 2048, publicExponent: Buffer.from([1, 0, 1]), ...t.publicAttributes },
        { keyType: ec ? graphene.KeyType.EC : graphene.KeyType.RSA, ...t.privateAttributes, ...this.opts.indiciumTemplateFault?.() },
      );
      try {
        const wrappedKey = await ops.wrapKey(s, keyWrapPad(this.wrapMechanism), k.kek, kp.privateKey);
        const publicKeySpki = ec ? ecPublicKeySpki(kp.publicKey) : rsaPublicKeySpki(kp.publicKey);
        return { wrappedKey, publicKeySpki };
      } finally {
        ops.destroyQuietly(kp.privateKey);
        ops.destroyQuietly(kp.publicKey);
      }
    });
  }

  async signWithWrappedKey(req: { wrappedKey: Buffer; algorithm: IndiciumKeyAlgorithm; data: Buffer }): Promise<Buffer> {
    this.assertEnabled(req.algorithm);
    return this.run('sign with wrapped key', async (s, k) => {
      const key = await this.unwrapIndiciumKey(s, k, req.wrappedKey, req.algorithm);
      try {
        return await signIndiciumData(s, key, req.algorithm, req.data);
      } finally {
        ops.destroyQuietly(key);
      }
    });
  }

  private unwrapIndiciumKey(s: graphene.Session, k: KeyHandles, wrapped: Buffer, algorithm: IndiciumKeyAlgorithm): Promise<graphene.Key> {
    return ops.unwrapKey(s, keyWrapPad(this.wrapMechanism), k.kek, wrapped, {
      class: graphene.ObjectClass.PRIVATE_KEY,
      keyType: algorithm === 'ec-p256' ? graphene.KeyType.EC : graphene.KeyType.RSA,
      ...sessionTemplate('indicium-unwrap'),
    });
  }

  /**
   * A key scope (KeyScope): one pooled session for `fn`, keys unwrapped once and destroyed in
   * `finally`. A session that fails recoverably runs `fn` again once on a new session (like every
   * other operation), so `fn` must produce its results only through its return value.
   */
  withKeys<T>(fn: (keys: KeyScope) => Promise<T>): Promise<T> {
    // An error of the caller's own code (a database failure, a refusal) is the caller's: it
    // passes through as it is instead of becoming a token error (HSM_ERROR).
    let own: { error: unknown } | undefined;
    return this.run('key scope', async (s, k) => {
      const made: graphene.Key[] = [];
      const chains = new Map<string, graphene.Key>();
      const chainKey = async (chain: KeyRef[]): Promise<graphene.Key> => {
        let parent: graphene.Key = k.kek;
        let path = '';
        for (const ref of chain) {
          path += `${ref.usage}:${ref.wrapped.toString('base64')}/`;
          let key = chains.get(path);
          if (!key) {
            key = await this.unwrapChain(s, parent, [ref], made);
            chains.set(path, key);
          }
          parent = key;
        }
        return parent;
      };
      const indiciumKey = async (wrappedKey: Buffer, algorithm: IndiciumKeyAlgorithm): Promise<graphene.Key> => {
        this.assertEnabled(algorithm);
        const path = `indicium:${algorithm}:${wrappedKey.toString('base64')}`;
        let key = chains.get(path);
        if (!key) {
          key = await this.unwrapIndiciumKey(s, k, wrappedKey, algorithm);
          made.push(key);
          chains.set(path, key);
        }
        return key;
      };
      const scope: KeyScope = {
        hmac: async (req) => ops.sign(s, 'SHA256_HMAC', await chainKey(req.keyChain), req.data),
        verifyHmac: async (req) => req.mac.length === HMAC_BYTES && ops.verify(s, 'SHA256_HMAC', await chainKey(req.keyChain), req.data, req.mac),
        encryptWithKeyChain: async (req) => {
          const key = await chainKey(req.keyChain);
          const iv = randomBytes(GCM_IV_BYTES);
          return Buffer.concat([iv, await ops.encrypt(s, aesGcm(iv, req.aad), key, req.plaintext)]);
        },
        signWithWrappedKey: async (req) => signIndiciumData(s, await indiciumKey(req.wrappedKey, req.algorithm), req.algorithm, req.data),
        identitySign: (data) => ops.sign(s, 'ECDSA', k.identity, sha256(data)),
        many: async (calls) => {
          // keys first (each unwrapped once per scope), then every call in one trip
          const ivs: Array<Buffer | undefined> = [];
          const todo: Array<TokenCall | null> = [];
          for (const c of calls) {
            if ('verifyHmac' in c) {
              const r = c.verifyHmac;
              todo.push(r.mac.length === HMAC_BYTES ? ops.tokenCall('verify', 'SHA256_HMAC', await chainKey(r.keyChain), r.data, r.mac) : null);
            } else if ('signWithWrappedKey' in c) {
              const r = c.signWithWrappedKey;
              const key = await indiciumKey(r.wrappedKey, r.algorithm);
              todo.push(r.algorithm === 'ec-p256' ? ops.tokenCall('sign', 'ECDSA', key, sha256(r.data)) : ops.tokenCall('sign', 'SHA256_RSA_PKCS', key, r.data));
            } else if ('encryptWithKeyChain' in c) {
              const r = c.encryptWithKeyChain;
              const iv = randomBytes(GCM_IV_BYTES);
              ivs[todo.length] = iv;
              todo.push(ops.tokenCall('encrypt', aesGcm(iv, r.aad), await chainKey(r.keyChain), r.plaintext));
            } else todo.push(ops.tokenCall('sign', 'ECDSA', k.identity, sha256(c.identitySign)));
          }
          const sent = todo.filter((t): t is TokenCall => t !== null);
          const results = sent.length ? await ops.runCalls(s, sent) : [];
          let next = 0;
          return todo.map((t, i) => {
            if (t === null) return false; // a MAC of the wrong length
            const r = results[next++];
            if (r.error) {
              const e = tokenError(r);
              if (t.fn === 'verify' && ops.isSignatureNo(e)) return false;
              throw e;
            }
            if (t.fn === 'verify') return r.ok === true;
            const value = r.value!;
            return ivs[i] ? Buffer.concat([ivs[i]!, value]) : value;
          });
        },
      };
      try {
        return await fn(scope);
      } catch (e) {
        if (e instanceof VbiError || ckr(e) !== undefined) throw e;
        own = { error: e };
        throw vbiError('INTERNAL', 'key scope: the caller failed');
      } finally {
        for (const m of made) ops.destroyQuietly(m);
      }
    }).catch((e) => {
      if (own) throw own.error;
      throw e;
    });
  }

  get parallelism(): number {
    return this.opts.library.threads;
  }

  get scopeLimit(): number {
    return Math.max(1, this.opts.hsm.sessionPoolSize - 1);
  }

  withSpareKeys<T>(max: number, fn: (scopes: KeyScope[]) => Promise<T>): Promise<T> {
    // each further scope is taken only while a session is free: acquire() then does not wait
    const nest = (got: KeyScope[]): Promise<T> =>
      got.length < max && this.session.pool.spare > 0 ? this.withKeys((k) => nest([...got, k])) : fn(got);
    return nest([]);
  }

  async generateWrappedSecretKey(): Promise<Buffer> {
    return this.run('generate wrapped secret key', async (s, k) => {
      const key = await ops.generateKey(s, 'AES_KEY_GEN', {
        class: graphene.ObjectClass.SECRET_KEY,
        keyType: graphene.KeyType.AES,
        valueLen: 32,
        ...sessionTemplate('user-secret-generate'),
      });
      try {
        return await ops.wrapKey(s, keyWrapPad(this.wrapMechanism), k.kek, key);
      } finally {
        ops.destroyQuietly(key);
      }
    });
  }

  // --- client secrets and key chains (registration, operational protocol, sessions) -----

  /** Unwraps `chain` starting under `parent` (the KEK for a whole chain); every object made goes to `made`. */
  private async unwrapChain(s: graphene.Session, parent: graphene.Key, chain: KeyRef[], made: graphene.Key[]): Promise<graphene.Key> {
    for (const ref of chain) {
      const t = ref.usage === 'wrap' ? sessionTemplate('chain-wrap') : ref.usage === 'hmac' ? sessionTemplate('chain-hmac') : sessionTemplate('chain-encrypt');
      const keyType = ref.usage === 'hmac' ? graphene.KeyType.GENERIC_SECRET : graphene.KeyType.AES;
      parent = await ops.unwrapKey(s, keyWrapPad(this.wrapMechanism), parent, ref.wrapped, { class: graphene.ObjectClass.SECRET_KEY, keyType, ...t });
      made.push(parent);
    }
    return parent;
  }

  private withChain<T>(what: string, chain: KeyRef[], fn: (s: graphene.Session, key: graphene.Key, k: KeyHandles) => Promise<T>): Promise<T> {
    return this.run(what, async (s, k) => {
      const made: graphene.Key[] = [];
      try {
        return await fn(s, await this.unwrapChain(s, k.kek, chain, made), k);
      } finally {
        for (const m of made) ops.destroyQuietly(m);
      }
    });
  }

  private unwrapClientSecret(s: graphene.Session, ciphertext: Buffer, usage: 'hmac' | 'encrypt', template: graphene.ITemplate): Promise<graphene.Key> {
    return ops.unwrapKey(s, rsaOaep(this.oaepHash), this.transportPrivate(s), ciphertext, {
      class: graphene.ObjectClass.SECRET_KEY,
      keyType: usage === 'hmac' ? graphene.KeyType.GENERIC_SECRET : graphene.KeyType.AES,
      ...template,
      ...(usage === 'hmac' ? { sign: true, verify: true } : { encrypt: true, decrypt: true }),
    }).catch((e) => {
      // The ciphertext is the client's: whatever the token says about unwrapping it (a failed OAEP
      // decoding — SoftHSM2 reports CKR_GENERAL_ERROR, HSMs the specific codes —, an empty or
      // oversized key, a template it will not build from those bytes) is the client's problem,
      // unless the session or the device failed.
      if (ckr(e) !== undefined && !isRecoverable(e) && !isDeviceError(e)) {
        throw vbiError('CLIENT_SECRET_INVALID', 'the encrypted client secret does not decrypt under the module transport key');
      }
      throw e;
    });
  }

  private transportPrivate(s: graphene.Session): graphene.Key {
    const found = s.find({ class: graphene.ObjectClass.PRIVATE_KEY, label: roleLabel('module-transport') });
    if (found.length !== 1) throw vbiError('KEY_MISSING', 'module transport key');
    return found.items(0).toType<graphene.PrivateKey>();
  }

  /** How long a 32-byte key is once wrapped with the configured mechanism: a throw-away session key, wrapped once. */
  private async wrapped32(s: graphene.Session, wrapping: graphene.Key): Promise<number> {
    if (this.wrappedLength32 === undefined) {
      const probe = await ops.generateKey(s, 'AES_KEY_GEN', {
        class: graphene.ObjectClass.SECRET_KEY, keyType: graphene.KeyType.AES, valueLen: 32, token: false, private: true,
        sensitive: true, extractable: true, encrypt: true,
      });
      try {
        this.wrappedLength32 = (await ops.wrapKey(s, keyWrapPad(this.wrapMechanism), wrapping, probe)).length;
      } finally {
        ops.destroyQuietly(probe);
      }
    }
    return this.wrappedLength32;
  }

  /** RSA-OAEP ciphertexts under the transport key are exactly as long as its modulus: checked before any token call. */
  private assertTransportCiphertext(ciphertext: Buffer): void {
    if (ciphertext.length !== this.transportModulusBytes()) {
      throw vbiError('CLIENT_SECRET_INVALID', `an encrypted client secret is ${this.transportModulusBytes()} bytes (RSA-OAEP under the module transport key)`);
    }
  }

  private transportModulusBytes(): number {
    this.transportModulus ??= (createPublicKey({ key: this.transportPublicKey(), format: 'der', type: 'spki' }).asymmetricKeyDetails?.modulusLength ?? 0) / 8;
    return this.transportModulus;
  }

  async importClientSecret(req: { ciphertext: Buffer; usage: 'hmac' | 'encrypt'; under: KeyRef[] }): Promise<Buffer> {
    this.assertTransportCiphertext(req.ciphertext);
    return this.withChain('import client secret', req.under, async (s, parent) => {
      const secret = await this.unwrapClientSecret(s, req.ciphertext, req.usage, sessionTemplate('client-import'));
      try {
        const refuse = (e: unknown) => {
          if (ckr(e) !== undefined && !isRecoverable(e) && !isDeviceError(e)) throw vbiError('CLIENT_SECRET_INVALID', 'client secrets are 32 bytes');
          throw e;
        };
        // Client secrets (HMK, password secret, session key) are 32 bytes. Not every token refuses
        // a short HMAC key, and some (SoftHSM2) report CKA_VALUE_LEN 0 on unwrapped keys, so:
        //  - a CKA_VALUE_LEN the token reports must be 32;
        //  - else the secret must also unwrap as an AES key (16, 24 or 32 bytes by definition) —
        //    for 'encrypt' it already is one —, and its wrapped length must be a 32-byte key's
        //    (AES key wrap with padding: 16 and 24 bytes wrap shorter).
        const valueLen = Number(secret.getAttribute({ valueLen: null }).valueLen ?? 0);
        if (valueLen > 0 && valueLen !== 32) throw vbiError('CLIENT_SECRET_INVALID', 'client secrets are 32 bytes');
        if (valueLen === 0 && req.usage === 'hmac') {
          const asAes = await this.unwrapClientSecret(s, req.ciphertext, 'encrypt', sessionTemplate('chain-encrypt')).catch(refuse);
          ops.destroyQuietly(asAes);
        }
        const trial = req.usage === 'hmac'
          ? ops.sign(s, 'SHA256_HMAC', secret, Buffer.alloc(1))
          : ops.encrypt(s, aesGcm(randomBytes(GCM_IV_BYTES), Buffer.alloc(0)), secret, Buffer.alloc(1));
        await trial.catch(refuse);
        const wrapped = await ops.wrapKey(s, keyWrapPad(this.wrapMechanism), parent, secret);
        if (wrapped.length !== (await this.wrapped32(s, parent))) throw vbiError('CLIENT_SECRET_INVALID', 'client secrets are 32 bytes');
        return wrapped;
      } finally {
        ops.destroyQuietly(secret);
      }
    });
  }

  async hmac(req: { keyChain: KeyRef[]; data: Buffer }): Promise<Buffer> {
    return this.withChain('hmac', req.keyChain, (s, key) => ops.sign(s, 'SHA256_HMAC', key, req.data));
  }

  async verifyHmac(req: { keyChain: KeyRef[]; data: Buffer; mac: Buffer }): Promise<boolean> {
    // a MAC of another length never verifies: answered here, the token never sees it
    if (req.mac.length !== HMAC_BYTES) return false;
    return this.withChain('verify hmac', req.keyChain, (s, key) => ops.verify(s, 'SHA256_HMAC', key, req.data, req.mac));
  }

  async verifyHmacWithClientSecret(req: { ciphertext: Buffer; data: Buffer; mac: Buffer }): Promise<boolean> {
    this.assertTransportCiphertext(req.ciphertext);
    if (req.mac.length !== HMAC_BYTES) return false;
    return this.run('verify client secret', async (s) => {
      const secret = await this.unwrapClientSecret(s, req.ciphertext, 'hmac', sessionTemplate('chain-hmac'));
      try {
        return await ops.verify(s, 'SHA256_HMAC', secret, req.data, req.mac);
      } finally {
        ops.destroyQuietly(secret);
      }
    });
  }

  async encryptWithKeyChain(req: { keyChain: KeyRef[]; plaintext: Buffer; aad: Buffer }): Promise<Buffer> {
    return this.withChain('encrypt with key chain', req.keyChain, async (s, key) => {
      const iv = randomBytes(GCM_IV_BYTES);
      return Buffer.concat([iv, await ops.encrypt(s, aesGcm(iv, req.aad), key, req.plaintext)]);
    });
  }

  async random(bytes: number): Promise<Buffer> {
    return this.run('random', (s) => Buffer.from(s.generateRandom(bytes)));
  }

  // --- identity and transport ---------------------------------------------------------

  /**
   * Is the token working? A signature with the identity key, verified, and a few random bytes:
   * what the transaction engine asks before taking the module out of rotation for a token error,
   * and again before putting it back.
   */
  async healthCheck(): Promise<{ ok: boolean; reason?: string }> {
    try {
      await this.run('health check', async (s, k) => {
        const digest = sha256(Buffer.from(`vbi health ${Date.now()}`));
        const sig = await ops.sign(s, 'ECDSA', k.identity, digest);
        if (!(await ops.verify(s, 'ECDSA', k.identityPub, digest, sig))) throw vbiError('MODULE_ERROR', 'identity signature does not verify');
        s.generateRandom(8);
      });
      return { ok: true };
    } catch (e) {
      return { ok: false, reason: (e as Error).message };
    }
  }

  async identitySign(data: Buffer): Promise<Buffer> {
    return this.run('identity sign', (s, k) => ops.sign(s, 'ECDSA', k.identity, sha256(data)));
  }

  identityPublicKey(): Buffer {
    this.assertServing();
    return this.identitySpki as Buffer;
  }

  async verifyApprovals(req: { statement: Buffer; approvals: Array<{ officer: string; signature: Buffer }> }): Promise<ApprovalCheck> {
    const digest = sha256(req.statement);
    return this.run('verify officer approvals', async (s) => {
      const approvers = readApprovers(s);
      const thresholds = new Set(approvers.map((a) => a.threshold));
      const valid: string[] = [];
      for (const a of req.approvals) {
        const key = approvers.find((k) => k.name === a.officer);
        if (!key || valid.includes(a.officer)) continue;
        if (await ops.verify(s, 'ECDSA', key.key, digest, a.signature)) valid.push(a.officer);
      }
      return {
        // every approver object must name the same M; anything else counts as no rule at all
        threshold: thresholds.size === 1 ? [...thresholds][0] : null,
        officers: approvers.map((a) => a.name),
        valid,
      };
    });
  }

  transportPublicKey(): Buffer {
    this.assertServing();
    return this.transportSpki as Buffer;
  }

  // --- data objects (checkpoint ring, module markers) ---------------------------------

  async listDataObjects(prefix: string): Promise<DataObject[]> {
    return this.run('list data objects', (s) => {
      const found = s.find({ class: graphene.ObjectClass.DATA, application: DATA_APPLICATION, token: true });
      const out: DataObject[] = [];
      for (let i = 0; i < found.length; i++) {
        const a = found.items(i).getAttribute({ label: null, value: null });
        const label = String(a.label);
        if (label.startsWith(prefix)) out.push({ label, value: Buffer.from(a.value as Buffer) });
      }
      return out;
    });
  }

  async createDataObject(obj: DataObject): Promise<void> {
    await this.run('create data object', (s) =>
      ops.createObject(s, {
        class: graphene.ObjectClass.DATA,
        token: true,
        private: true,
        modifiable: false,
        application: DATA_APPLICATION,
        label: obj.label,
        value: obj.value,
      }));
  }

  async destroyDataObject(label: string): Promise<void> {
    await this.run('destroy data object', (s) => ops.destroyFound(s, { class: graphene.ObjectClass.DATA, application: DATA_APPLICATION, label }));
  }

  async close(): Promise<void> {
    this.session.pool.close();
    this.keys = undefined;
    if (this.fsm.state !== 'Error') this.fsm.to('UnInitialized');
  }
}

function isWeakKeys(e: unknown): e is VbiError {
  return e instanceof VbiError && e.code === 'KEY_ATTRIBUTES_WEAK';
}

function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}
