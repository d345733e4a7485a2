import type { IndiciumKeyAlgorithm } from '@vbi/core/indicium/key-algorithm';
import { ModuleState } from './module-state';
import { SelfTestReport } from './self-test';
import { ProbeReport } from './token-probe';
import { PackageSuite } from './mechanisms';

/** Defined with the indicium (the client reads it too); named here for the module's callers. */
export type { IndiciumKeyAlgorithm };

/**
 * The HSM boundary: the one interface through which the service uses a cryptographic module.
 * Everything PKCS#11 sits behind it (packages/server/src/hsm/crypto-module.ts); SoftHSM2 specifics are only
 * configuration. Keys are addressed by role, never by handle; no method returns secret key
 * material, only ciphertext, MACs, signatures, wrapped keys and public keys.
 *
 * There is deliberately no method that creates or destroys a long-term key: those belong to
 * the key ceremony (packages/server/src/hsm/key-ceremony.ts), run by the Crypto-Officer.
 */
export interface HsmModule {
  readonly tokenLabel: string;
  /**
   * The module serial: the module's identity in the module table, checkpoints and its certificate.
   * The token's serialNumber, or derived from the identity key (profile serialSource).
   */
  readonly serial: string;
  readonly suite: PackageSuite;

  status(): ModuleStatus;

  /** Encrypts package secrets under the package encryption key; returns IV || ciphertext (|| tag). */
  encryptSecrets(req: { plaintext: Buffer; aad: Buffer }): Promise<Buffer>;
  /** Inverse of encryptSecrets; throws PACKAGE_DECRYPT_FAILED on a bad tag or padding. */
  decryptSecrets(req: { ciphertext: Buffer; aad: Buffer }): Promise<Buffer>;
  /** MAC under the package/checkpoint MAC key (AES-CMAC 16 bytes, DES3-CMAC 8 bytes). */
  mac(data: Buffer): Promise<Buffer>;
  /** Verifies inside the token (C_Verify), so no comparison of MACs happens in the host. */
  verifyMac(data: Buffer, mac: Buffer): Promise<boolean>;

  /** Generates a meter's indicium key pair in the token; the private key leaves only wrapped. */
  generateIndiciumKey(req: { algorithm: IndiciumKeyAlgorithm }): Promise<{ wrappedKey: Buffer; publicKeySpki: Buffer }>;
  /** Unwraps the key into a session object, signs, destroys it. EC: raw r||s over SHA-256(data). */
  signWithWrappedKey(req: { wrappedKey: Buffer; algorithm: IndiciumKeyAlgorithm; data: Buffer }): Promise<Buffer>;
  /** A fresh AES-256 key generated in the token and returned wrapped under the KEK. */
  generateWrappedSecretKey(): Promise<Buffer>;

  /**
   * Takes a client secret (HMK, password secret, session key) that the client encrypted to the
   * module transport key with RSA-OAEP, and returns it wrapped under the last key of `under`
   * (or the KEK when `under` is empty). The secret exists in clear only inside the token.
   */
  importClientSecret(req: { ciphertext: Buffer; usage: 'hmac' | 'encrypt'; under: KeyRef[] }): Promise<Buffer>;
  /** HMAC-SHA256 with the last key of a chain of wrapped keys (the first is unwrapped by the KEK). */
  hmac(req: { keyChain: KeyRef[]; data: Buffer }): Promise<Buffer>;
  /** Verifies an HMAC-SHA256 inside the token with the last key of the chain. */
  verifyHmac(req: { keyChain: KeyRef[]; data: Buffer; mac: Buffer }): Promise<boolean>;
  /** Verifies an HMAC-SHA256 with a client secret that arrives RSA-OAEP-encrypted (password check). */
  verifyHmacWithClientSecret(req: { ciphertext: Buffer; data: Buffer; mac: Buffer }): Promise<boolean>;
  /** AES-256-GCM with the last key of the chain: returns IV(12) || ciphertext || tag(16). */
  encryptWithKeyChain(req: { keyChain: KeyRef[]; plaintext: Buffer; aad: Buffer }): Promise<Buffer>;

  /**
   * Runs `fn` with a key scope (KeyScope): one command's operations with the same wrapped keys
   * unwrap each key once instead of once per call.
   */
  withKeys<T>(fn: (keys: KeyScope) => Promise<T>): Promise<T>;

  /**
   * Runs `fn` with up to `max` more key scopes, each on a session the pool has free at that
   * moment: it never waits for a session (so a caller that already holds one cannot deadlock the
   * pool), and `fn` gets fewer scopes, or none, when the pool is busy. For work that splits
   * over sessions (the items of a print request).
   */
  withSpareKeys<T>(max: number, fn: (scopes: KeyScope[]) => Promise<T>): Promise<T>;
  /** How many calls the process runs on the token side by side (its token threads). */
  readonly parallelism: number;
  /**
   * How many key scopes callers may hold at once without the session pool running dry: one less
   * than the pool, because a scope's holder also makes single calls (each takes a session for a
   * moment) while it holds its scope.
   */
  readonly scopeLimit: number;

  /** Random bytes from the token's generator (challenges, session ids). */
  random(bytes: number): Promise<Buffer>;

  /** Signs with the module identity key: raw r||s ECDSA P-256 over SHA-256(data). */
  identitySign(data: Buffer): Promise<Buffer>;
  identityPublicKey(): Buffer;
  transportPublicKey(): Buffer;

  /**
   * Officer approvals (packages/server/src/hsm/officer-keys.ts): the approvers the Security Officer installed in
   * this token as CKA_TRUSTED keys, their threshold, and which of `approvals` verify inside the
   * token (C_Verify, ECDSA P-256 over SHA-256(statement)) under the key of the officer each names.
   */
  verifyApprovals(req: { statement: Buffer; approvals: Array<{ officer: string; signature: Buffer }> }): Promise<ApprovalCheck>;

  /** Private CKO_DATA token objects of this application whose label starts with `prefix`. */
  listDataObjects(prefix: string): Promise<DataObject[]>;
  createDataObject(obj: DataObject): Promise<void>;
  destroyDataObject(label: string): Promise<void>;

  /** After a device error: find the token again (same serial), self-tests, key entry. */
  reconnect(): Promise<void>;

  /** Signs and verifies with the identity key and draws random bytes: is the token working? Never throws. */
  healthCheck(): Promise<{ ok: boolean; reason?: string }>;

  close(): Promise<void>;
}


/**
 * The key-chain operations of HsmModule inside one PKCS#11 session held for the scope: each
 * wrapped key (each prefix of a chain, each wrapped indicium key) is unwrapped into a session
 * object the first time it is needed and reused after that; every object is destroyed when the
 * scope's function returns or throws, and none outlives that session. Calls must not overlap.
 */
export interface KeyScope {
  hmac(req: { keyChain: KeyRef[]; data: Buffer }): Promise<Buffer>;
  verifyHmac(req: { keyChain: KeyRef[]; data: Buffer; mac: Buffer }): Promise<boolean>;
  encryptWithKeyChain(req: { keyChain: KeyRef[]; plaintext: Buffer; aad: Buffer }): Promise<Buffer>;
  signWithWrappedKey(req: { wrappedKey: Buffer; algorithm: IndiciumKeyAlgorithm; data: Buffer }): Promise<Buffer>;
  /** HsmModule.identitySign in the scope's session (no other session is taken from the pool). */
  identitySign(data: Buffer): Promise<Buffer>;
  /**
   * Several of the calls above in one trip to the token, one after the other on the scope's
   * session: each call's answer in order (a signature or ciphertext; true/false for verifyHmac).
   * The first token error fails them all.
   */
  many(calls: ScopeCall[]): Promise<Array<Buffer | boolean>>;
}

/** One call of KeyScope.many: the name of the KeyScope method and its argument. */
export type ScopeCall =
  | { verifyHmac: { keyChain: KeyRef[]; data: Buffer; mac: Buffer } }
  | { signWithWrappedKey: { wrappedKey: Buffer; algorithm: IndiciumKeyAlgorithm; data: Buffer } }
  | { encryptWithKeyChain: { keyChain: KeyRef[]; plaintext: Buffer; aad: Buffer } }
  | { identitySign: Buffer };

/** A key stored wrapped (in a package or a session row) and what it may be used for once unwrapped. */
export interface KeyRef { wrapped: Buffer; usage: 'wrap' | 'hmac' | 'encrypt' }

export interface DataObject { label: string; value: Buffer }

export interface ApprovalCheck {
  /** M of the installed M-of-N rule; null when no approver is installed or their labels disagree. */
  threshold: number | null;
  /** Names of the installed approvers. */
  officers: string[];
  /** Officers whose approval verified (each once). */
  valid: string[];
}

export interface ModuleStatus {
  tokenLabel: string;
  serial: string;
  library: string;
  state: ModuleState;
  reason?: string;
  since: string;
  suite: PackageSuite;
  selfTest: SelfTestReport | null;
  /** The start-up probe of the token against its profile (null before key entry). */
  probe: ProbeReport | null;
  /** Name of the token profile (packages/server/hsm/profiles). */
  profile: string;
  sessions: number;
}
