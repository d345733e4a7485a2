import { vbiError } from '@vbi/core/errors';
import { IndiciumKeyAlgorithm } from '../../hsm/hsm-module';
import { CommandContext, CommandOutcome } from '../psd-engine';
import { PsdPackage } from '@vbi/core/psd/psd-package';
import { readCertInfo } from '@vbi/core/pki/cert-info';
import { existing } from './guards';
import { CertificateToStore, checkCertificate } from './metergen-certify';
import { assertKeyMatches } from './key-probe';

/**
 * Indicium key renewal (WO 99/41690: keys expire, a new pair is generated and certified): swaps
 * the wrapped key, algorithm, certificate serial and expiry in one sealed package, so there is
 * no moment where the package holds a key without its certificate. The module proves that the
 * new certificate names the new wrapped key. The previous certificate is not touched: indicia
 * signed before the swap carry its serial and keep verifying against it (certificate store).
 */
export function renewMeterKey(req: CertificateToStore & { newWrappedKey: Buffer; algorithm: IndiciumKeyAlgorithm }) {
  return async (opened: PsdPackage | null, ctx: CommandContext): Promise<CommandOutcome<{ previousSerialHex: string; serialHex: string }>> => {
    const pkg = existing(opened);
    if (pkg.state === 'closed') throw vbiError('METER_CLOSED', `meter ${pkg.meterId} is closed`);
    if (pkg.indiciumCertSerial === '') throw vbiError('METER_NOT_CERTIFIED', `meter ${pkg.meterId} has no certified key to renew; certify it first`);
    if (pkg.indiciumCertSerial === req.serialHex) throw vbiError('CERT_INVALID', `meter ${pkg.meterId} already holds certificate ${req.serialHex}`);
    checkCertificate(req, ctx.now);
    await assertKeyMatches(ctx.hsm, { wrappedKey: req.newWrappedKey, algorithm: req.algorithm, spki: readCertInfo(req.certificateDer).spki, what: `meter ${pkg.meterId} renewal` });
    return {
      package: {
        ...pkg,
        indiciumKeyAlgorithm: req.algorithm,
        indiciumCertSerial: req.serialHex,
        indiciumKeyExpiry: req.notAfter,
        secrets: { ...pkg.secrets, wrappedIndiciumKey: req.newWrappedKey },
      },
      type: 'key-renewal',
      amount: 0,
      result: { previousSerialHex: pkg.indiciumCertSerial, serialHex: req.serialHex },
    };
  };
}
