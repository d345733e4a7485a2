import { vbiError } from '@vbi/core/errors';
import { CommandContext, CommandOutcome } from '../psd-engine';
import { PsdPackage } from '@vbi/core/psd/psd-package';
import {
  MeterTransaction, ResyncRequest, ResyncResponse, resyncMacInput, resyncResponseMacInput, resyncSignedBytes,
} from '@vbi/core/protocol/messages';
import { existing } from './guards';
import { hmkChain } from './mailer-operations';
import { CHALLENGE_BYTES } from './registration';

/** How far the client's clock may be from the module's (the same bound as dynamic passwords). */
const CLOCK_SKEW_MS = 5 * 60_000;

/**
 * The resync exchange (docs/protocol.md 6), inside one module dispatch: the request's HMAC over
 * a fresh client nonce is verified with the HMK in the token (BAD_MAC) in place of the
 * challenge, which the client may have lost; the module issues a new challenge and answers with
 * it, the registers proven current by this dispatch and the meter's transactions the caller read
 * in the same transaction, signed with the module identity key and MACed with the HMK. The
 * registers and funds do not change.
 */
export function resync(req: ResyncRequest, transactions: { list: MeterTransaction[]; more: boolean }) {
  return async (opened: PsdPackage | null, ctx: CommandContext): Promise<CommandOutcome<ResyncResponse>> => {
    const pkg = existing(opened);
    const chain = hmkChain(pkg);
    const { mac, ...signed } = req;
    if (!(await ctx.hsm.verifyHmac({ keyChain: chain, data: resyncMacInput(signed), mac: Buffer.from(mac, 'base64') }))) {
      throw vbiError('BAD_MAC', 'resync HMAC does not verify with the meter HMK');
    }
    if (Math.abs(req.clientTime - ctx.now) > CLOCK_SKEW_MS) throw vbiError('BAD_REQUEST', 'client clock is more than 5 minutes off');
    const next = await ctx.hsm.random(CHALLENGE_BYTES);
    const after: PsdPackage = { ...pkg, secrets: { ...pkg.secrets, lastChallenge: next } };
    const { list, more } = transactions;
    const unsigned: Omit<ResyncResponse, 'signature' | 'mac'> = {
      meterId: pkg.meterId, clientNonce: req.clientNonce, challenge: next.toString('base64'),
      registers: { ascending: pkg.ascendingRegister, descending: pkg.descendingRegister }, state: pkg.state,
      sequence: pkg.recordCounter + 1, time: new Date(ctx.now).toISOString(), moduleSerial: ctx.hsm.serial, checkpointSeq: ctx.checkpointSeq,
      transactions: list, more,
    };
    const signature = (await ctx.hsm.identitySign(resyncSignedBytes(unsigned))).toString('base64');
    const answerMac = await ctx.hsm.hmac({ keyChain: chain, data: resyncResponseMacInput({ ...unsigned, signature }) });
    return { package: after, type: 'inquiry', amount: 0, result: { ...unsigned, signature, mac: answerMac.toString('base64') } };
  };
}
