import { CommandContext, CommandOutcome } from '../psd-engine';
import { PsdPackage, newPackage } from '@vbi/core/psd/psd-package';
import { IndiciumKeyAlgorithm } from '../../hsm/hsm-module';

/** Result of createUncertifiedMeter: the public key to certify. */
export interface MeterGenCreated {
  publicKeySpki: Buffer;
  algorithm: IndiciumKeyAlgorithm;
}

/**
 * MeterGen step 1 (WO 01/29778): a new package, state 'unassigned', with an indicium key pair
 * generated in the token (wrapped under the package KEK) and a user-secrets key. The
 * certificate serial stays empty: the package is unusable until meter-certify (certifyMeterKey)
 * stores a certificate for this key. Returns the public key for the certificate request.
 */
export function createUncertifiedMeter(req: { meterId: string; maxDescendingRegister: number; licensingZip?: string; algorithm: IndiciumKeyAlgorithm }) {
  return async (_pkg: PsdPackage | null, ctx: CommandContext): Promise<CommandOutcome<MeterGenCreated>> => {
    const key = await ctx.hsm.generateIndiciumKey({ algorithm: req.algorithm });
    const userSecretsKey = await ctx.hsm.generateWrappedSecretKey();
    const base = newPackage({ meterId: req.meterId, maxDescendingRegister: req.maxDescendingRegister, licensingZip: req.licensingZip });
    return {
      package: {
        ...base,
        state: 'unassigned',
        indiciumCertSerial: '',
        indiciumKeyAlgorithm: req.algorithm,
        indiciumKeyExpiry: 0,
        secrets: { ...base.secrets, wrappedIndiciumKey: key.wrappedKey, wrappedUserSecretsKey: userSecretsKey },
      },
      type: 'meter-create',
      amount: 0,
      result: { publicKeySpki: key.publicKeySpki, algorithm: req.algorithm },
    };
  };
}
