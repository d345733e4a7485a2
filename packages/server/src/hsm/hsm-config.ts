import { PackageSuite } from './mechanisms';
import { TokenProfile } from './token-profile';

/** One module token of the service, and how the service logs in to it. */
export interface ModuleConfig {
  /** Token label that selects the slot (RFC 7512 `token=`). */
  tokenLabel: string;
  /** PIN of the service's role on the token (Crypto-User). */
  userPin: string;
  /** PKCS#11 user type used by the service: 1 = CKU_USER; e.g. 0x80000001 for a Luna Crypto User. */
  userType: number;
}

/** The HSM part of the service configuration (read from the environment by packages/server/src/config/config.ts). */
export interface HsmConfig {
  /** Path of the PKCS#11 library (libsofthsm2.so, libCryptoki2_64.so, ...). */
  library: string;
  /** SOFTHSM2_CONF to export before C_Initialize; undefined for other libraries. */
  softhsm2Conf?: string;
  /** What the token implementation supports and needs (PKCS11_PROFILE, packages/server/hsm/profiles). */
  profile: TokenProfile;
  /** PKCS11_INIT_PARAMETERS: a string passed to C_Initialize in pReserved (NSS softokn's configdir); usually unset. */
  initParameters?: string;
  modules: ModuleConfig[];
  /** Cipher suite of the package keys of this deployment. */
  suite: PackageSuite;
  /** Number of checkpoint records each module keeps in its ring (3..5). */
  ringSize: number;
  /** Mechanism number for AES key wrap with padding (RFC 5649): the profile's unless PKCS11_WRAP_MECHANISM. */
  wrapMechanism: number;
  /** Hash of RSA-OAEP used with the transport keys: the profile's unless PKCS11_OAEP_HASH. */
  oaepHash: 'sha1' | 'sha256';
  /** Sessions per token kept open for concurrent commands. */
  sessionPoolSize: number;
  /** Token threads of the library (packages/server/src/hsm/token-threads.ts): PKCS11_THREADS, default one per core, at most 4. */
  threads?: number;
}
