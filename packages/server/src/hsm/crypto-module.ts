import { ApprovalCheck, DataObject, HsmModule, IndiciumKeyAlgorithm, KeyRef, KeyScope, ModuleStatus } from './hsm-module';
import { PackageSuite } from './mechanisms';
import { CryptoModuleOptions, ModuleLifecycle } from './module-lifecycle';
import * as packageKeys from './package-keys';
import * as indiciumKeys from './indicium-keys';
import * as keyChains from './key-chains';
import * as clientSecrets from './client-secrets';
import * as keyScope from './key-scope';
import * as identityKeys from './identity-keys';
import * as dataObjects from './data-objects';
import { verifyApprovals } from './officer-keys';

export type { CryptoModuleOptions } from './module-lifecycle';

/**
 * The cryptographic module: one PKCS#11 token used in the Crypto-User role. The only service
 * code that calls PKCS#11. Sessions come from a pool; a lost session, a lost login or stale
 * object handles are recovered once per call by reopening, logging in again and finding the
 * keys again; a device error puts the module into Error until `reconnect()` succeeds.
 *
 * The life cycle is in module-lifecycle.ts; the operations, by group, in package-keys,
 * indicium-keys, key-chains, client-secrets, key-scope, identity-keys, officer-keys and
 * data-objects.
 */
export class CryptoModule implements HsmModule {
  readonly tokenLabel: string;
  readonly suite: PackageSuite;

  private constructor(private readonly m: ModuleLifecycle) {
    this.tokenLabel = m.tokenLabel;
    this.suite = m.suite;
  }

  /**
   * Powers the module on: self-tests, login, key entry. Never throws for a failed self-test
   * or a missing key: the module comes back in the Error state and says why in status().
   */
  static async start(opts: CryptoModuleOptions): Promise<CryptoModule> {
    const m = new ModuleLifecycle(opts);
    await m.powerOn();
    return new CryptoModule(m);
  }

  get serial(): string {
    return this.m.serial;
  }

  status(): ModuleStatus {
    return this.m.status();
  }

  /** Why the token cannot be used safely (a failed probe check, a blank serial), or undefined. */
  get unsuitable(): string | undefined {
    return this.m.unsuitable;
  }

  /** After a device error: find the token again (same serial), self-test, key entry. */
  async reconnect(): Promise<void> {
    return this.m.reconnect();
  }

  // --- package keys

  async encryptSecrets(req: { plaintext: Buffer; aad: Buffer }): Promise<Buffer> {
    return packageKeys.encryptSecrets(this.m, req);
  }

  async decryptSecrets(req: { ciphertext: Buffer; aad: Buffer }): Promise<Buffer> {
    return packageKeys.decryptSecrets(this.m, req);
  }

  async mac(data: Buffer): Promise<Buffer> {
    return packageKeys.mac(this.m, data);
  }

  async verifyMac(data: Buffer, mac: Buffer): Promise<boolean> {
    return packageKeys.verifyMac(this.m, data, mac);
  }

  // --- indicium keys

  async generateIndiciumKey(req: { algorithm: IndiciumKeyAlgorithm }): Promise<{ wrappedKey: Buffer; publicKeySpki: Buffer }> {
    return indiciumKeys.generateIndiciumKey(this.m, req);
  }

  async signWithWrappedKey(req: { wrappedKey: Buffer; algorithm: IndiciumKeyAlgorithm; data: Buffer }): Promise<Buffer> {
    return indiciumKeys.signWithWrappedKey(this.m, req);
  }

  // --- key scopes

  withKeys<T>(fn: (keys: KeyScope) => Promise<T>): Promise<T> {
    return keyScope.withKeys(this.m, fn);
  }

  get parallelism(): number {
    return this.m.opts.library.threads;
  }

  get scopeLimit(): number {
    return Math.max(1, this.m.opts.hsm.sessionPoolSize - 1);
  }

  withSpareKeys<T>(max: number, fn: (scopes: KeyScope[]) => Promise<T>): Promise<T> {
    return keyScope.withSpareKeys(this.m, max, fn);
  }

  // --- client secrets and key chains (registration, operational protocol, sessions)

  async generateWrappedSecretKey(): Promise<Buffer> {
    return keyChains.generateWrappedSecretKey(this.m);
  }

  async importClientSecret(req: { ciphertext: Buffer; usage: 'hmac' | 'encrypt'; under: KeyRef[] }): Promise<Buffer> {
    return clientSecrets.importClientSecret(this.m, req);
  }

  async hmac(req: { keyChain: KeyRef[]; data: Buffer }): Promise<Buffer> {
    return keyChains.hmac(this.m, req);
  }

  async verifyHmac(req: { keyChain: KeyRef[]; data: Buffer; mac: Buffer }): Promise<boolean> {
    return keyChains.verifyHmac(this.m, req);
  }

  async verifyHmacWithClientSecret(req: { ciphertext: Buffer; data: Buffer; mac: Buffer }): Promise<boolean> {
    return clientSecrets.verifyHmacWithClientSecret(this.m, req);
  }

  async encryptWithKeyChain(req: { keyChain: KeyRef[]; plaintext: Buffer; aad: Buffer }): Promise<Buffer> {
    return keyChains.encryptWithKeyChain(this.m, req);
  }

  async random(bytes: number): Promise<Buffer> {
    return this.m.run('random', (s) => Buffer.from(s.generateRandom(bytes)));
  }

  // --- identity and transport

  async healthCheck(): Promise<{ ok: boolean; reason?: string }> {
    return identityKeys.healthCheck(this.m);
  }

  async identitySign(data: Buffer): Promise<Buffer> {
    return identityKeys.identitySign(this.m, data);
  }

  identityPublicKey(): Buffer {
    return this.m.identityPublicKey();
  }

  async verifyApprovals(req: { statement: Buffer; approvals: Array<{ officer: string; signature: Buffer }> }): Promise<ApprovalCheck> {
    return verifyApprovals(this.m, req);
  }

  transportPublicKey(): Buffer {
    return this.m.transportPublicKey();
  }

  // --- data objects (checkpoint ring, module markers)

  async listDataObjects(prefix: string): Promise<DataObject[]> {
    return dataObjects.listDataObjects(this.m, prefix);
  }

  async createDataObject(obj: DataObject): Promise<void> {
    return dataObjects.createDataObject(this.m, obj);
  }

  async destroyDataObject(label: string): Promise<void> {
    return dataObjects.destroyDataObject(this.m, label);
  }

  async close(): Promise<void> {
    return this.m.close();
  }
}
