import { vbiError } from '@vbi/core/errors';
import { CommandContext, CommandOutcome } from '../psd-engine';
import { PsdPackage } from '@vbi/core/psd/psd-package';
import { readCertInfo } from '@vbi/core/pki/cert-info';
import { existing } from './guards';
import { assertKeyMatches } from './key-probe';

/** What meter-certify and key-renewal store: the certificate the caller has verified (MeterGen). */
export interface CertificateToStore {
  certificateDer: Buffer;
  /** Canonical serial (lower-case hex, no leading zero byte); must be the certificate's. */
  serialHex: string;
  /** Expiry of the indicium key, ms since epoch: at most the certificate's notAfter. */
  notAfter: number;
}

/**
 * MeterGen step 4, inside the module: stores the certificate serial and key expiry in an
 * unassigned, uncertified package. The module itself proves that the certificate's key is the
 * package's wrapped key (CERT_KEY_MISMATCH), and refuses a serial or expiry the certificate
 * does not carry (CERT_INVALID). The chain is MeterGen's to verify, before this command.
 */
export function certifyMeterKey(req: CertificateToStore) {
  return async (opened: PsdPackage | null, ctx: CommandContext): Promise<CommandOutcome<{ serialHex: string }>> => {
    const pkg = existing(opened);
    if (pkg.indiciumCertSerial !== '') throw vbiError('METER_ALREADY_CERTIFIED', `meter ${pkg.meterId} is already certified (serial ${pkg.indiciumCertSerial}); renew its key instead`);
    if (pkg.state !== 'unassigned') throw vbiError('METER_ALREADY_CERTIFIED', `meter ${pkg.meterId} is ${pkg.state}, not an unassigned MeterGen package`);
    if (!pkg.indiciumKeyAlgorithm || pkg.secrets.wrappedIndiciumKey.length === 0) throw vbiError('BAD_REQUEST', `meter ${pkg.meterId} has no indicium key`);
    checkCertificate(req, ctx.now);
    await assertKeyMatches(ctx.hsm, { wrappedKey: pkg.secrets.wrappedIndiciumKey, algorithm: pkg.indiciumKeyAlgorithm, spki: readCertInfo(req.certificateDer).spki, what: `meter ${pkg.meterId}` });
    return {
      package: { ...pkg, indiciumCertSerial: req.serialHex, indiciumKeyExpiry: req.notAfter },
      type: 'meter-certify',
      amount: 0,
      result: { serialHex: req.serialHex },
    };
  };
}

/** The serial and expiry to store must be those of the certificate, and it must be current. */
export function checkCertificate(req: CertificateToStore, now: number): void {
  const cert = readCertInfo(req.certificateDer);
  if (cert.serialHex !== req.serialHex) throw vbiError('CERT_INVALID', `serial ${req.serialHex} is not the certificate's serial ${cert.serialHex}`);
  if (!Number.isSafeInteger(req.notAfter) || req.notAfter > cert.notAfter.getTime()) throw vbiError('CERT_INVALID', 'key expiry is later than the certificate\'s notAfter');
  if (now < cert.notBefore.getTime() || now >= req.notAfter) throw vbiError('CERT_INVALID', `certificate ${cert.serialHex} is not valid now`);
}

/**
 * Guard for commands that put a meter into service or sign with its key (meter-assign,
 * indicium): the key must be certified and not expired. MeterGen packages stay 'unassigned'
 * with an empty serial until certified, so an uncertified meter can never be used.
 */
export function requireCertifiedKey(pkg: PsdPackage, now: number): void {
  if (pkg.indiciumCertSerial === '' || pkg.secrets.wrappedIndiciumKey.length === 0) {
    throw vbiError('METER_NOT_CERTIFIED', `meter ${pkg.meterId} has no certified indicium key`);
  }
  if (pkg.indiciumKeyExpiry !== 0 && pkg.indiciumKeyExpiry <= now) {
    throw vbiError('METER_NOT_CERTIFIED', `meter ${pkg.meterId}: indicium key expired at ${new Date(pkg.indiciumKeyExpiry).toISOString()}; renew it`);
  }
}
