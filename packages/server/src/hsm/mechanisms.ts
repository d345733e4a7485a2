import * as graphene from 'graphene-pk11';
import * as pkcs11 from 'pkcs11js';

/**
 * Cipher suites for the shared package keys. A deployment picks one; every sealed package
 * records the suite it was sealed with (docs/psd-package.md).
 *  - aes:         AES-256-GCM for secret fields, AES-256-CMAC for package/checkpoint MACs.
 *  - legacy-3des: 3DES-CBC (PKCS#7 padding) for secret fields, DES3-CMAC for MACs, as older postal
 *                 security modules did. The KEK stays AES-256 in both: SoftHSM2 cannot wrap with 3DES.
 */
export type PackageSuite = 'aes' | 'legacy-3des';
export const PACKAGE_SUITES: readonly PackageSuite[] = ['aes', 'legacy-3des'];
export function isPackageSuite(s: string): s is PackageSuite {
  return (PACKAGE_SUITES as readonly string[]).includes(s);
}
/** Suite identifiers as persisted in packages. Never renumber. */
export const SUITE_ID: Record<PackageSuite, number> = { aes: 1, 'legacy-3des': 2 };

/** AES key wrap with padding as PKCS#11 2.40 defines it (SoftHSM2's): 0x210A. */
export const CKM_AES_KEY_WRAP_PAD: number = pkcs11.CKM_AES_KEY_WRAP_PAD;
/** AES key wrap with padding per RFC 5649 (PKCS#11 3.0, most HSMs): 0x210B; pkcs11js has no name for it. */
export const CKM_AES_KEY_WRAP_KWP = 0x210b;
/** DES3-CMAC (0x138): graphene's mechanism enum lacks it. */
export const CKM_DES3_CMAC: number = pkcs11.CKM_DES3_CMAC;
/** PKCS#11 v2.40 attributes graphene-pk11 2.3 does not know by name: 0x171 and 0x172. */
export const CKA_COPYABLE: number = pkcs11.CKA_COPYABLE;
export const CKA_DESTROYABLE: number = pkcs11.CKA_DESTROYABLE;
/** The largest CK_ULONG (32 bits): bound of a configured mechanism number or user type. */
export const MAX_CK_ULONG = 0xffffffff;

/** A mechanism number as token profiles write it: 0x and upper-case hex digits. */
export function mechanismHex(mechanism: number): string {
  return `0x${mechanism.toString(16).toUpperCase()}`;
}

export const GCM_IV_BYTES = 12;
export const GCM_TAG_BITS = 128;
export const DES3_IV_BYTES = 8;

export function aesGcm(iv: Buffer, aad: Buffer): graphene.IAlgorithm {
  // AesGcm240Params sets ulIvBits; the older AesGcmParams leaves it uninitialised (seen with graphene-pk11 2.3.6).
  return { name: 'AES_GCM', params: new graphene.AesGcm240Params(iv, aad, GCM_TAG_BITS) };
}

export function des3Cbc(iv: Buffer): graphene.IAlgorithm {
  return { name: 'DES3_CBC_PAD', params: iv };
}

/** graphene's mechanism enum lacks DES3_CMAC: pass the number. */
export function macMechanism(suite: PackageSuite): graphene.MechanismType {
  return suite === 'aes' ? 'AES_CMAC' : ({ name: CKM_DES3_CMAC as unknown as string, params: null } as graphene.IAlgorithm);
}

/** AES key wrap with padding (RFC 5649); the mechanism number differs between tokens. */
export function keyWrapPad(mechanism: number): graphene.IAlgorithm {
  return { name: mechanism as unknown as string, params: null };
}

export function rsaOaep(hash: 'sha1' | 'sha256'): graphene.IAlgorithm {
  const params = hash === 'sha1'
    ? new graphene.RsaOaepParams(graphene.MechanismEnum.SHA1, graphene.RsaMgf.MGF1_SHA1)
    : new graphene.RsaOaepParams(graphene.MechanismEnum.SHA256, graphene.RsaMgf.MGF1_SHA256);
  return { name: 'RSA_PKCS_OAEP', params };
}

/** EC P-256 named-curve OID as DER, for CKA_EC_PARAMS. */
export const P256_PARAMS: Buffer = graphene.NamedCurve.getByName('secp256r1').value;
