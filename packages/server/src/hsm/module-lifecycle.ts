import { randomBytes } from 'node:crypto';
import * as graphene from 'graphene-pk11';
import { vbiError, VbiError } from '@vbi/core/errors';
import { HsmConfig, ModuleConfig } from './hsm-config';
import { ModuleStatus } from './hsm-module';
import { LibraryHandle, findSlotByLabel } from './pkcs11-library';
import { TokenSession, openSession } from './token-session';
import { ModuleStateMachine } from './module-state';
import { KAT_VECTORS, KatVectors, SelfTestReport, runSelfTests } from './self-test';
import { PackageSuite } from './mechanisms';
import { isDeviceError, toVbiError } from './pkcs11-errors';
import { ecPublicKeySpki, rsaPublicKeySpki } from './public-keys';
import * as ops from './async-ops';
import { ProbeReport, probeToken } from './token-probe';
import { TokenProfile, serialFromIdentity } from './token-profile';
import { KeyHandles, findModuleKeys, transportPrivate } from './module-keys';

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

/**
 * The life cycle of a CryptoModule: power-on (self-tests, login, key entry), serving operations
 * through `run`, recovery, reconnect after a device error, close. The operation groups
 * (package-keys, indicium-keys, key-chains, client-secrets, key-scope, identity-keys,
 * data-objects) work through `run` and the fields below.
 */
export class ModuleLifecycle {
  readonly tokenLabel: string;
  readonly suite: PackageSuite;
  readonly wrapMechanism: number;
  readonly oaepHash: 'sha1' | 'sha256';
  readonly profile: TokenProfile;
  readonly session: TokenSession;
  private _serial = '';
  private readonly fsm: ModuleStateMachine;
  private slot: graphene.Slot | undefined;
  private keys: KeyHandles | undefined;
  private identitySpki: Buffer | undefined;
  private transportSpki: Buffer | undefined;
  private selfTest: SelfTestReport | null = null;
  private probe: ProbeReport | null = null;
  private _unsuitable: string | undefined;
  private inFlight = 0;

  constructor(readonly opts: CryptoModuleOptions) {
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
        this.keys = findModuleKeys(s, this.tokenLabel, this.suite);
      },
      // weak key attributes: the token ignored CKA_SENSITIVE / CKA_EXTRACTABLE on unwrap, so no key is safe on it
      closesSession: (e) => isWeakKeys(e) || (!(e instanceof VbiError) && isDeviceError(e)),
      onFailure: (e, what) => {
        if (isWeakKeys(e)) this.fsm.to('Error', `${what}: ${e.message}`);
        else if (!(e instanceof VbiError) && isDeviceError(e)) this.fsm.to('Error', `${what}: device error ${(e as Error).message}`);
      },
    });
  }

  get serial(): string {
    return this._serial;
  }

  /** The power-on self-test report (null before it ran). */
  get selfTestReport(): SelfTestReport | null {
    return this.selfTest;
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

  /**
   * Powers the module on: self-tests, login, key entry. Never throws for a failed self-test
   * or a missing key: the module comes back in the Error state and says why in status().
   */
  async powerOn(): Promise<void> {
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
   * its profile (packages/server/src/hsm/token-probe.ts), go Idle. A failed required probe check is an Error
   * with reason 'token unsuitable' (the service refuses to start on it).
   */
  private async keyEntry(): Promise<void> {
    this.fsm.to('KeyEntry');
    const s = await this.session.pool.acquire();
    try {
      this.session.login(s);
      this.keys = findModuleKeys(s, this.tokenLabel, this.suite);
      this.identitySpki = ecPublicKeySpki(this.keys.identityPub);
      this.transportSpki = rsaPublicKeySpki(this.keys.transportPub);
      if (this.profile.serialSource === 'identity-key') this._serial = serialFromIdentity(this.identitySpki);
      if (!this._serial) throw vbiError('TOKEN_UNSUITABLE', `token '${this.tokenLabel}' reports a blank serial number: use a token profile with serialSource identity-key`);
      this.probe = await probeToken(this.slot as graphene.Slot, {
        profile: this.profile, suite: this.suite, wrapMechanism: this.wrapMechanism, oaepHash: this.oaepHash,
        transport: { privateKey: transportPrivate(s) as graphene.PrivateKey, publicKey: this.keys.transportPub },
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

  assertServing(): void {
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
  async run<T>(what: string, op: (s: graphene.Session, k: KeyHandles) => Promise<T> | T): Promise<T> {
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

  identityPublicKey(): Buffer {
    this.assertServing();
    return this.identitySpki as Buffer;
  }

  transportPublicKey(): Buffer {
    this.assertServing();
    return this.transportSpki as Buffer;
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

  async close(): Promise<void> {
    this.session.pool.close();
    this.keys = undefined;
    if (this.fsm.state !== 'Error') this.fsm.to('UnInitialized');
  }
}

function isWeakKeys(e: unknown): e is VbiError {
  return e instanceof VbiError && e.code === 'KEY_ATTRIBUTES_WEAK';
}
