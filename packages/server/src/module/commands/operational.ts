import { timingSafeEqual } from 'node:crypto';
import { vbiError } from '@vbi/core/errors';
import { KeyRef } from '../../hsm/hsm-module';
import { CommandContext, CommandOutcome } from '../psd-engine';
import { PsdPackage } from '@vbi/core/psd/psd-package';
import { decodeUserSecrets } from '@vbi/core/psd/user-secrets';
import {
  OperationalRequest, OperationalResponse, Receipt, receiptSignedBytes, requestMacInput, responseMacInput,
} from '@vbi/core/protocol/messages';
import { existing } from './guards';
import { CHALLENGE_BYTES } from './registration';
import { receiptFields } from './receipt';

/** What an operation inside the protocol gets besides the package. */
export interface OperationContext extends CommandContext {
  /** [user-secrets key, HMK]: for dynamic passwords and MACs inside the token. */
  hmkChain: KeyRef[];
  /** The user-secrets key alone: parent of session keys. */
  usk: KeyRef;
}

/**
 * An operation inside the protocol. `result` goes into the MAC'd response; `kept` is what the
 * operation hands back to the service alone (a session key wrapped for the session row, the
 * items a print request printed), never to the client.
 */
export type ProtocolOperation<R, K = undefined> = (pkg: PsdPackage, ctx: OperationContext) => Promise<Omit<CommandOutcome<R>, 'result'> & { result: R; kept?: K }>;

/** What an operational dispatch returns to the service: the response for the client and what the operation kept. */
export interface Operated<R, K = undefined> {
  response: OperationalResponse<R>;
  kept: K | undefined;
}

/**
 * The operational state of WO 01/29778 (FIG. 7) around one operation, all inside one module
 * dispatch: verify the request's HMAC with the HMK inside the token (BAD_MAC), that it carries
 * the module's last challenge (STALE_CHALLENGE: replayed or reordered) and the client's register
 * copy equals the package's (REGISTER_MISMATCH); run the operation; issue a new challenge; sign
 * a receipt with the module identity key; MAC the response with the HMK.
 */
export function operational<R extends Record<string, unknown>, K = undefined>(req: OperationalRequest, op: ProtocolOperation<R, K>) {
  return async (opened: PsdPackage | null, ctx: CommandContext): Promise<CommandOutcome<Operated<R, K>>> => {
    const pkg = existing(opened);
    const secrets = decodeUserSecrets(pkg.secrets.userSecrets);
    if (!secrets) throw vbiError('NOT_REGISTERED', `meter ${pkg.meterId} has not completed registration`);
    const usk: KeyRef = { wrapped: pkg.secrets.wrappedUserSecretsKey, usage: 'wrap' };
    const hmkChain: KeyRef[] = [usk, { wrapped: secrets.wrappedHmk, usage: 'hmac' }];

    // one key scope for the whole request: the HMK and the keys under it are unwrapped once
    return ctx.hsm.withKeys(async (keys) => {
      const mac = Buffer.from(req.mac, 'base64');
      if (!(await keys.verifyHmac({ keyChain: hmkChain, data: requestMacInput(req), mac }))) {
        throw vbiError('BAD_MAC', 'request HMAC does not verify with the meter HMK');
      }
      checkEnvelopeState(req, pkg, ctx.now);
      const { kept, ...out } = await op(pkg, { ...ctx, keys, hmkChain, usk });
      const unsigned = receiptFields(ctx, {
        meterId: pkg.meterId, op: req.op, amount: out.amount,
        ascendingRegister: out.package.ascendingRegister, descendingRegister: out.package.descendingRegister,
        // after whatever the operation took (a print request's items take the values before it)
        sequence: out.package.recordCounter + 1,
      });
      // the next challenge and the receipt's signature do not depend on each other: one round of trips
      const [next, signature] = await Promise.all([ctx.hsm.random(CHALLENGE_BYTES), ctx.hsm.identitySign(receiptSignedBytes(unsigned))]);
      const after: PsdPackage = { ...out.package, secrets: { ...out.package.secrets, lastChallenge: next } };
      const receipt: Receipt = { ...unsigned, signature: signature.toString('base64') };
      const response: Omit<OperationalResponse<R>, 'mac'> = {
        meterId: pkg.meterId, op: req.op, challenge: next.toString('base64'),
        registers: { ascending: after.ascendingRegister, descending: after.descendingRegister },
        result: out.result, receipt,
      };
      const responseMac = await keys.hmac({ keyChain: hmkChain, data: responseMacInput(response as OperationalResponse) });
      return { ...out, package: after, result: { response: { ...response, mac: responseMac.toString('base64') }, kept } };
    });
  };
}

/**
 * The envelope's checks after its MAC, against the meter's package: it carries the module's last
 * challenge (STALE_CHALLENGE: replayed or reordered), the client's register copy equals the
 * package's (REGISTER_MISMATCH), and the user secrets are within their lifetime
 * (USER_SECRETS_EXPIRED), except for a re-key, which replaces them (docs/protocol.md 7). The
 * module runs it inside every dispatch; the mailer service runs it before a side effect outside
 * the module (charging a payment).
 */
export function checkEnvelopeState(req: Pick<OperationalRequest, 'challenge' | 'registers' | 'op'>, pkg: PsdPackage, now: number): void {
  if (!carriesLastChallenge(req, pkg)) {
    throw vbiError('STALE_CHALLENGE', 'request does not carry the challenge the module issued last (replayed or out of order)');
  }
  if (req.registers.ascending !== pkg.ascendingRegister || req.registers.descending !== pkg.descendingRegister) {
    throw vbiError('REGISTER_MISMATCH', "the client's register copy differs from the meter's", {
      ascendingRegister: pkg.ascendingRegister, descendingRegister: pkg.descendingRegister,
    });
  }
  if (req.op !== 'rekey') requireUnexpired(pkg, now);
}

/** Whether the request carries the challenge the module issued last (constant time; an empty one never matches). */
function carriesLastChallenge(req: Pick<OperationalRequest, 'challenge'>, pkg: PsdPackage): boolean {
  const challenge = Buffer.from(req.challenge, 'base64');
  const last = pkg.secrets.lastChallenge;
  return challenge.length === last.length && last.length > 0 && timingSafeEqual(challenge, last);
}

/** USER_SECRETS_EXPIRED once the package's user secrets are past their lifetime (0: no lifetime). */
function requireUnexpired(pkg: PsdPackage, now: number): void {
  if (pkg.userSecretsExpiry > 0 && now >= pkg.userSecretsExpiry) {
    throw vbiError('USER_SECRETS_EXPIRED', `the user secrets of meter ${pkg.meterId} expired at ${new Date(pkg.userSecretsExpiry).toISOString()}: re-key first`);
  }
}
