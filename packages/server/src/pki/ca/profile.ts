import * as pkijs from 'pkijs';
import { METER_ID_PATTERN } from '@vbi/core/psd/psd-package';
import { OID } from '@vbi/core/pki/oids';
import {
  authorityKeyIdentifier, basicConstraints, extKeyUsage, keyUsage, nextCaKeyHash, subjectKeyIdentifier,
} from '@vbi/core/pki/extensions';
import { keyAlgorithmOf } from '@vbi/core/pki/verify-signature';

/**
 * The certificate profile of the dev/test postal CA (docs/pki.md "Certificate profile").
 * Changing a rule here changes what every relying party sees: update docs/pki.md with it.
 */
export type LeafProfileName = 'indicium' | 'module-identity';

/** The rules of one end-entity profile. */
export interface LeafProfile {
  /** The request's subject OU selects the profile; the RA signature covers it. */
  organizationalUnit: LeafProfileName;
  /** What the subject CN must look like. */
  commonName: RegExp;
  /** Key types accepted (as the PSD package names them). */
  keys: ReadonlyArray<'ec-p256' | 'rsa-2048'>;
  /** extendedKeyUsage purpose (non-critical). */
  purpose: string;
}

/** The end-entity profiles, by the subject OU that selects them. */
export const LEAF_PROFILES: Record<LeafProfileName, LeafProfile> = {
  indicium: { organizationalUnit: 'indicium', commonName: METER_ID_PATTERN, keys: ['ec-p256', 'rsa-2048'], purpose: OID.kpIndicium },
  // CN = the module's token serial number (what checkpoints and audit records name)
  'module-identity': { organizationalUnit: 'module-identity', commonName: /^[\x21-\x7e]{1,32}$/, keys: ['ec-p256'], purpose: OID.kpModuleIdentity },
};

/** The profile a request's OU selects, or null. */
export function leafProfileFor(ou: string | undefined): LeafProfile | null {
  return ou === 'indicium' || ou === 'module-identity' ? LEAF_PROFILES[ou] : null;
}

/** Lifetimes, in days unless said otherwise. */
export interface ValidityConfig {
  rootDays: number;
  issuingDays: number;
  /** Lifetime of an indicium key certificate: the meter must renew its key before this ends. */
  indiciumDays: number;
  moduleIdentityDays: number;
  /** notBefore is set this many seconds in the past, for relying parties whose clocks lag. */
  backdateSeconds: number;
}

/** Lifetimes of a new CA (ca.json may override them). */
export const DEFAULT_VALIDITY: ValidityConfig = {
  rootDays: 3650, issuingDays: 1825, indiciumDays: 365, moduleIdentityDays: 730, backdateSeconds: 300,
};

const DAY_MS = 86_400_000;

/** [notBefore, notAfter] in whole seconds; never past the issuer's own notAfter. */
export function validity(req: { now: number; days: number; backdateSeconds: number; issuerNotAfter?: Date }): { notBefore: Date; notAfter: Date } {
  const start = Math.floor(req.now / 1000) * 1000;
  let end = start + req.days * DAY_MS;
  if (req.issuerNotAfter && end > req.issuerNotAfter.getTime()) end = req.issuerNotAfter.getTime();
  return { notBefore: new Date(start - req.backdateSeconds * 1000), notAfter: new Date(end) };
}

/** Root: CA, keyCertSign + cRLSign, and the hash of the next root key (rollover). */
export function rootExtensions(req: { spki: Buffer; nextSpki: Buffer }): pkijs.Extension[] {
  return [...caExtensions({ pathLen: 1, spki: req.spki }), nextCaKeyHash(req.nextSpki)];
}

/** Rollover link certificate (new root key certified by the old one): as a root, plus the AKID of the old key. */
export function linkExtensions(req: { spki: Buffer; nextSpki: Buffer; oldSpki: Buffer }): pkijs.Extension[] {
  return [...rootExtensions(req), authorityKeyIdentifier(req.oldSpki)];
}

/** Issuing CA: CA with pathLen 0 (issues only end-entity certificates). */
export function issuingExtensions(req: { spki: Buffer; rootSpki: Buffer }): pkijs.Extension[] {
  return [...caExtensions({ pathLen: 0, spki: req.spki }), authorityKeyIdentifier(req.rootSpki)];
}

/** What every CA certificate starts with, in this order: CA with `pathLen`, keyCertSign + cRLSign, its key id. */
function caExtensions(req: { pathLen: number; spki: Buffer }): pkijs.Extension[] {
  return [basicConstraints({ ca: true, pathLen: req.pathLen }), keyUsage(['keyCertSign', 'cRLSign']), subjectKeyIdentifier(req.spki)];
}

/** End entity: not a CA, digitalSignature only, and the profile's key purpose. */
export function leafExtensions(req: { profile: LeafProfile; spki: Buffer; issuerSpki: Buffer }): pkijs.Extension[] {
  return [
    basicConstraints({ ca: false }),
    keyUsage(['digitalSignature']),
    extKeyUsage([req.profile.purpose]),
    subjectKeyIdentifier(req.spki),
    authorityKeyIdentifier(req.issuerSpki),
  ];
}

/** The key type of a requested key if the profile accepts it, else null. */
export function acceptedKey(profile: LeafProfile, spki: Buffer): 'ec-p256' | 'rsa-2048' | null {
  const alg = keyAlgorithmOf(spki);
  return alg && profile.keys.includes(alg) ? alg : null;
}
