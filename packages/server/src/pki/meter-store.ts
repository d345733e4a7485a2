import type { IndiciumKeyAlgorithm } from '@vbi/core/indicium/key-algorithm';

/**
 * The storage port MeterGen works through. The transaction engine implements it on PostgreSQL
 * (packages/server/src/ledger/pg-meter-store.ts; test/helpers/memory-meter-store.ts is the tests' in-memory
 * implementation over one PsdEngine); each
 * package-changing method is one PsdEngine.dispatch of a command from packages/server/src/module/commands/,
 * whose package, checkpoint and (for certify/renew) certificate row commit in one transaction.
 */
export interface MeterGenStore {
  /**
   * New meter row with an unassigned, uncertified package (command createUncertifiedMeter):
   * the indicium key is generated in the module and stored only wrapped inside the package.
   * Refuses a meter ID that already exists (BAD_REQUEST).
   */
  createUncertifiedMeter(req: CreateMeterRequest): Promise<CreatedMeter>;
  /**
   * Signs a PKCS#10 CertificationRequestInfo with the meter's (still uncertified) key
   * (signRequestWithPackageKey). Returns the X.509 signature value. Anything that is not a
   * request for this meter and key is refused (CSR_SIGN_REFUSED): this is no general signing call.
   */
  signCertificationRequest(req: { meterId: string; requestInfo: Buffer }): Promise<Buffer>;
  /**
   * Stores the verified certificate: dispatch certifyMeterKey, and in the same transaction make
   * the certificate findable by serial (CertificateStore).
   */
  certifyMeter(req: CertifyMeterRequest): Promise<void>;
  /** Removes an uncertified meter after a failed MeterGen (no-op if absent; refuses a certified one). */
  discardMeter(meterId: string): Promise<void>;
}

/** Renewal of a certified meter's indicium key (WO 99/41690 key expiry). */
export interface KeyRenewalStore {
  /** Generates the next key pair in a module; it stays outside the package (wrapped) until commit. */
  beginKeyRenewal(req: { meterId: string; algorithm: IndiciumKeyAlgorithm }): Promise<PendingRenewal>;
  /** signCertificationRequest with the pending key (signRequestWithKey). */
  signRenewalRequest(req: { meterId: string; renewalId: string; requestInfo: Buffer }): Promise<Buffer>;
  /**
   * Atomically swaps key, serial and expiry (dispatch renewMeterKey) and records the new
   * certificate by serial; the previous certificate stays in the store.
   */
  commitKeyRenewal(req: CertifyMeterRequest & { renewalId: string }): Promise<{ previousSerialHex: string }>;
  /** Forgets a pending key (after a failure); the package is unchanged. */
  abandonKeyRenewal(req: { meterId: string; renewalId: string }): Promise<void>;
}

/** A new MeterGen meter: its ID, key type and package limits. */
export interface CreateMeterRequest {
  meterId: string;
  algorithm: IndiciumKeyAlgorithm;
  maxDescendingRegister: number;
  licensingZip?: string;
}

/** The uncertified meter's public key, for its certificate request. */
export interface CreatedMeter {
  meterId: string;
  publicKeySpki: Buffer;
  algorithm: IndiciumKeyAlgorithm;
}

/** A certificate MeterGen has verified, to store with the package. */
export interface CertifyMeterRequest {
  meterId: string;
  certificateDer: Buffer;
  /** Canonical serial of the certificate (lower-case hex, no leading zero byte). */
  serialHex: string;
  /** Indicium key expiry, ms since epoch (at most the certificate's notAfter). */
  notAfter: number;
}

/** A renewal in progress: the new key's public half and the id to commit or abandon it by. */
export interface PendingRenewal {
  meterId: string;
  renewalId: string;
  publicKeySpki: Buffer;
  algorithm: IndiciumKeyAlgorithm;
}
