import { CommandOutcome, CommandContext } from '../psd-engine';
import { PsdPackage, newPackage } from '../../psd/psd-package';
import { IndiciumKeyAlgorithm } from '../../hsm/hsm-module';

/**
 * Creates an active meter package: the module generates the meter's indicium key pair and its
 * user-secrets key inside the token; both leave it only wrapped under the package KEK.
 * (MeterGen creates unassigned packages and certifies their keys before a meter is used.)
 */
export function createMeter(req: { meterId: string; maxDescendingRegister: number; licensingZip: string; algorithm: IndiciumKeyAlgorithm }) {
  return async (_pkg: PsdPackage | null, ctx: CommandContext): Promise<CommandOutcome<{ publicKeySpki: Buffer }>> => {
    const key = await ctx.hsm.generateIndiciumKey({ algorithm: req.algorithm });
    const userSecretsKey = await ctx.hsm.generateWrappedSecretKey();
    const base = newPackage({ meterId: req.meterId, maxDescendingRegister: req.maxDescendingRegister, licensingZip: req.licensingZip });
    return {
      package: {
        ...base,
        state: 'active',
        indiciumKeyAlgorithm: req.algorithm,
        secrets: { ...base.secrets, wrappedIndiciumKey: key.wrappedKey, wrappedUserSecretsKey: userSecretsKey },
      },
      type: 'meter-create',
      amount: 0,
      result: { publicKeySpki: key.publicKeySpki },
    };
  };
}
