import { vbiError } from '@vbi/core/errors';
import { KeyRef } from '../../hsm/hsm-module';
import { rekeyProofInput } from '@vbi/core/protocol/messages';
import { decodeUserSecrets, encodeUserSecrets, passwordVerifierInput } from '@vbi/core/psd/user-secrets';
import { ProtocolOperation } from './operational';

/**
 * Re-key (docs/protocol.md 7): inside an operational request MAC'd with the current HMK, the
 * client proves the current password (its secret RSA-OAEP-encrypted to the module transport key,
 * checked against the verifier inside the token: WRONG_PASSWORD) and sends a new HMK and a new
 * password secret the same way. The module takes both in as registration does, replaces the
 * user secrets, starts a new lifetime and proves the new HMK over the client's nonce. The answer
 * is still MAC'd with the old HMK (the client holds both until it has checked it); every later
 * request needs the new one. The only operation allowed once the user secrets have expired.
 */
export function rekey(req: {
  encryptedPasswordSecret: Buffer; encryptedNewHmk: Buffer; encryptedNewPasswordSecret: Buffer; proofNonce: string; userSecretsLifetimeMs: number;
}): ProtocolOperation<{ newHmkProof: string; userSecretsExpiry: string }> {
  return async (pkg, ctx) => {
    if (pkg.state === 'closed') throw vbiError('METER_CLOSED', `meter ${pkg.meterId} is closed`);
    const secrets = decodeUserSecrets(pkg.secrets.userSecrets);
    if (!secrets) throw vbiError('NOT_REGISTERED', `meter ${pkg.meterId} is not registered`);
    const ok = await ctx.hsm.verifyHmacWithClientSecret({ ciphertext: req.encryptedPasswordSecret, data: passwordVerifierInput(pkg.meterId), mac: secrets.passwordVerifier });
    if (!ok) throw vbiError('WRONG_PASSWORD', 'password does not match');
    const wrappedHmk = await ctx.hsm.importClientSecret({ ciphertext: req.encryptedNewHmk, usage: 'hmac', under: [ctx.usk] });
    const wrappedPw = await ctx.hsm.importClientSecret({ ciphertext: req.encryptedNewPasswordSecret, usage: 'hmac', under: [ctx.usk] });
    const passwordVerifier = await ctx.hsm.hmac({ keyChain: [ctx.usk, { wrapped: wrappedPw, usage: 'hmac' }], data: passwordVerifierInput(pkg.meterId) });
    const newHmk: KeyRef[] = [ctx.usk, { wrapped: wrappedHmk, usage: 'hmac' }];
    const newHmkProof = await ctx.hsm.hmac({ keyChain: newHmk, data: rekeyProofInput(pkg.meterId, req.proofNonce) });
    const userSecretsExpiry = ctx.now + req.userSecretsLifetimeMs;
    return {
      package: { ...pkg, userSecretsExpiry, secrets: { ...pkg.secrets, userSecrets: encodeUserSecrets({ wrappedHmk, passwordVerifier }) } },
      type: 'rekey', amount: 0,
      result: { newHmkProof: newHmkProof.toString('base64'), userSecretsExpiry: new Date(userSecretsExpiry).toISOString() },
    };
  };
}
