import { vbiError } from '@vbi/core/errors';
import { HsmModule, KeyRef } from '../../hsm/hsm-module';
import { registrationChallengeBytes } from '@vbi/core/protocol/messages';
import { CommandContext, CommandOutcome } from '../psd-engine';
import { PsdPackage } from '@vbi/core/psd/psd-package';
import { decodeUserSecrets, encodeUserSecrets, passwordVerifierInput } from '@vbi/core/psd/user-secrets';
import { existing } from './guards';

export const CHALLENGE_BYTES = 16;

/**
 * Registration, second half (WO 01/29778 "registration/authorization state"): the client has
 * verified the module and sends a fresh HMK and its password secret, each RSA-OAEP-encrypted to
 * the module transport key. The module takes both in without the host seeing them: the HMK is
 * kept wrapped under the meter's user-secrets key, the password only as an HMAC verifier computed
 * inside the token. The meter becomes active and gets its first challenge. It has no licence
 * until the licensing authority grants one (docs/licensing.md): a meter handed out before
 * licensing existed (its package decodes as grandfathered) loses that here; a revoked one stays revoked.
 */
export function registerUserSecrets(req: { encryptedHmk: Buffer; encryptedPasswordSecret: Buffer; userSecretsLifetimeMs: number }) {
  return async (opened: PsdPackage | null, ctx: CommandContext): Promise<CommandOutcome<{ challenge: Buffer; hmkProof: Buffer }>> => {
    const pkg = existing(opened);
    if (pkg.state === 'closed') throw vbiError('METER_CLOSED', `meter ${pkg.meterId} is closed`);
    // a pool meter no registration was given (step 1a assigns it to an account first)
    if (pkg.state === 'unassigned' || !pkg.licensingZip) throw vbiError('REGISTRATION_UNKNOWN', `meter ${pkg.meterId} was not handed out by a registration`);
    if (decodeUserSecrets(pkg.secrets.userSecrets)) throw vbiError('ALREADY_REGISTERED', `meter ${pkg.meterId} is already registered`);
    if (!pkg.indiciumCertSerial) throw vbiError('METER_NOT_CERTIFIED', `meter ${pkg.meterId} has no certified indicium key`);
    const wrappedUsk = pkg.secrets.wrappedUserSecretsKey.length ? pkg.secrets.wrappedUserSecretsKey : await ctx.hsm.generateWrappedSecretKey();
    const usk: KeyRef = { wrapped: wrappedUsk, usage: 'wrap' };
    const wrappedHmk = await ctx.hsm.importClientSecret({ ciphertext: req.encryptedHmk, usage: 'hmac', under: [usk] });
    const wrappedPw = await ctx.hsm.importClientSecret({ ciphertext: req.encryptedPasswordSecret, usage: 'hmac', under: [usk] });
    const passwordVerifier = await ctx.hsm.hmac({ keyChain: [usk, { wrapped: wrappedPw, usage: 'hmac' }], data: passwordVerifierInput(pkg.meterId) });
    const challenge = await ctx.hsm.random(CHALLENGE_BYTES);
    // Proof for the client that the module holds its HMK: HMAC(HMK, challenge).
    const hmkProof = await ctx.hsm.hmac({ keyChain: [usk, { wrapped: wrappedHmk, usage: 'hmac' }], data: challenge });
    return {
      package: {
        ...pkg,
        state: 'active',
        licence: pkg.licence === 'revoked' ? 'revoked' : 'none',
        licenceId: '',
        userSecretsExpiry: ctx.now + req.userSecretsLifetimeMs,
        secrets: {
          ...pkg.secrets,
          wrappedUserSecretsKey: wrappedUsk,
          userSecrets: encodeUserSecrets({ wrappedHmk, passwordVerifier }),
          lastChallenge: challenge,
        },
      },
      type: 'registration',
      amount: 0,
      result: { challenge, hmkProof },
    };
  };
}

/** Registration step 1b: the module signs the client's nonce and its transport key with its identity key. */
export function signRegistrationChallenge(req: { meterId: string; clientNonce: string; transportKeySpki: string }) {
  return (hsm: HsmModule): Promise<Buffer> => hsm.identitySign(registrationChallengeBytes(req));
}
