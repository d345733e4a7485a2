import { vbiError } from '@vbi/core/errors';
import { HsmModule, KeyRef } from '../../hsm/hsm-module';
import { dynamicPasswordInput, OperationalRequest, requestMacInput } from '@vbi/core/protocol/messages';
import { PsdPackage } from '@vbi/core/psd/psd-package';
import { decodeUserSecrets, passwordVerifierInput } from '@vbi/core/psd/user-secrets';
import { ProtocolOperation } from './operational';
import { postageValueDownload } from './postage-value-download';
import { fullRefund, partialRefund } from './refund';

/**
 * The operations that run inside the operational protocol wrapper (operational.ts): each gets
 * the verified package and the meter's key chains, and returns the package after the operation.
 */

export interface Balance extends Record<string, unknown> { ascending: number; descending: number; refundRegister: number; state: string }

/** Balance, history, print authorisation: only the challenge changes. */
export const inquiry: ProtocolOperation<Balance> = async (pkg) => ({
  package: pkg, type: 'inquiry', amount: 0,
  result: { ascending: pkg.ascendingRegister, descending: pkg.descendingRegister, refundRegister: pkg.refundRegister, state: pkg.state },
});

/**
 * Session open (secure on-line printing claims: continuous link, dynamic password): the password secret, RSA-OAEP-encrypted to the transport key, must
 * verify against the package's verifier inside the token (WRONG_PASSWORD); the client's fresh
 * session key is taken in wrapped under the user-secrets key and kept for the session row (`kept`)
 * — never in the response.
 */
export function openSession(req: { sessionId: string; encryptedPasswordSecret: Buffer; encryptedSessionKey: Buffer; heartbeatIntervalMs: number; timeoutMs: number }): ProtocolOperation<Record<string, unknown>, Buffer> {
  return async (pkg, ctx) => {
    const secrets = decodeUserSecrets(pkg.secrets.userSecrets);
    if (!secrets) throw vbiError('NOT_REGISTERED', `meter ${pkg.meterId} is not registered`);
    const ok = await ctx.hsm.verifyHmacWithClientSecret({ ciphertext: req.encryptedPasswordSecret, data: passwordVerifierInput(pkg.meterId), mac: secrets.passwordVerifier });
    if (!ok) throw vbiError('WRONG_PASSWORD', 'password does not match');
    const wrappedSessionKey = await ctx.hsm.importClientSecret({ ciphertext: req.encryptedSessionKey, usage: 'encrypt', under: [ctx.usk] });
    return {
      package: pkg, type: 'session', amount: 0, kept: wrappedSessionKey,
      result: { sessionId: req.sessionId, heartbeatIntervalMs: req.heartbeatIntervalMs, timeoutMs: req.timeoutMs },
    };
  };
}

export function closeSession(req: { sessionId: string }): ProtocolOperation<Record<string, unknown>> {
  return async (pkg) => ({ package: pkg, type: 'session', amount: 0, result: { sessionId: req.sessionId, closed: true } });
}

/** Purchase: an approved payment becomes a PVD in the same dispatch. */
export function purchase(req: { amount: number; paymentId: number; status: 'approved' | 'pending' }): ProtocolOperation<Record<string, unknown>> {
  return async (pkg) => {
    if (req.status === 'pending') {
      return { package: pkg, type: 'inquiry', amount: 0, result: { paymentId: req.paymentId, status: 'pending', amount: req.amount } };
    }
    const out = await postageValueDownload({ amount: req.amount })(pkg);
    return { ...out, result: { paymentId: req.paymentId, status: 'approved', amount: req.amount } };
  };
}

export function refundOperation(req: { kind: 'partial' | 'full'; amount?: number; spoilageLimitBps: number }): ProtocolOperation<Record<string, unknown>> {
  return async (pkg) => {
    if (req.kind === 'partial') {
      const out = await partialRefund({ amount: req.amount as number, spoilageLimitBps: req.spoilageLimitBps })(pkg);
      return { ...out, result: { kind: 'partial', refunded: req.amount as number } };
    }
    const out = await fullRefund()(pkg);
    return { ...out, result: { kind: 'full', refunded: out.result.refunded } };
  };
}

/** The meter's HMK chain, for checks outside a dispatch (heartbeats). */
export function hmkChain(pkg: PsdPackage): KeyRef[] {
  const secrets = decodeUserSecrets(pkg.secrets.userSecrets);
  if (!secrets) throw vbiError('NOT_REGISTERED', `meter ${pkg.meterId} is not registered`);
  return [{ wrapped: pkg.secrets.wrappedUserSecretsKey, usage: 'wrap' }, { wrapped: secrets.wrappedHmk, usage: 'hmac' }];
}

/**
 * The envelope's MAC, checked with the meter's HMK inside the token outside a dispatch
 * (Ledger.inspect): BAD_MAC unless the meter's HMK signed it. No challenge check: a retry of an
 * answered request carries a used challenge and must still be recognised.
 */
export function envelopeMacCheck(env: OperationalRequest) {
  return async (pkg: PsdPackage, hsm: HsmModule): Promise<PsdPackage> => {
    if (!(await hsm.verifyHmac({ keyChain: hmkChain(pkg), data: requestMacInput(env), mac: Buffer.from(env.mac, 'base64') }))) {
      throw vbiError('BAD_MAC', 'request HMAC does not verify with the meter HMK');
    }
    return pkg;
  };
}

/** Whether a heartbeat's dynamic password verifies with the meter's HMK (outside a dispatch, Ledger.inspect). */
export function heartbeatCheck(req: { meterId: string; sessionId: string; counter: number; clientTime: number; dynamicPassword: string }) {
  return (pkg: PsdPackage, hsm: HsmModule): Promise<boolean> => hsm.verifyHmac({
    keyChain: hmkChain(pkg),
    data: dynamicPasswordInput({ meterId: req.meterId, sessionId: req.sessionId, counter: req.counter, clientTime: req.clientTime, purpose: 'heartbeat' }),
    mac: Buffer.from(req.dynamicPassword, 'base64'),
  });
}
