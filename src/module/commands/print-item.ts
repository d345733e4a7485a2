import { vbiError } from '../../errors';
import { CommandContext, CommandOutcome } from '../psd-engine';
import { PsdPackage } from '../../psd/psd-package';
import { dynamicPasswordInput, Receipt, receiptSignedBytes } from '../../protocol/messages';
import { createIndicium, Mailpiece, PrintedIndicium } from './create-indicium';
import { existing } from './guards';
import { hmkChain } from './mailer-operations';

export interface SessionItem {
  counter: number;
  clientTime: number;
  destinationZip: string;
  postage: number;
  dynamicPassword: Buffer;
}

/** AAD of an indicium encrypted to a session (docs/protocol.md, section 4). */
export function indiciumAad(sessionId: string, counter: number): Buffer {
  return Buffer.from(`VBI-INDICIUM\n${sessionId}\n${counter}`, 'utf8');
}

/**
 * One print of a session (secure on-line printing claims: continuous link, dynamic password): the item's dynamic password — HMAC with the HMK over
 * session, counter, client time, destination and amount — is verified inside the token
 * (BAD_DYNAMIC_PASSWORD), then the indicium is debited and signed (CreateIndicium) and encrypted
 * to the session key inside the token, with a receipt signed by the module identity key.
 */
export function printSessionItem(req: { sessionId: string; wrappedSessionKey: Buffer; item: SessionItem; mailpiece: Mailpiece; type?: 'indicium' | 'correction' }) {
  return async (opened: PsdPackage | null, ctx: CommandContext): Promise<CommandOutcome<PrintedIndicium & { encryptedIndicium: Buffer; receipt: Receipt }>> => {
    const pkg = existing(opened);
    const chain = hmkChain(pkg);
    const dp = dynamicPasswordInput({
      meterId: pkg.meterId, sessionId: req.sessionId, counter: req.item.counter, clientTime: req.item.clientTime,
      purpose: 'print', destinationZip: req.item.destinationZip, postage: req.item.postage,
    });
    if (!(await ctx.hsm.verifyHmac({ keyChain: chain, data: dp, mac: req.item.dynamicPassword }))) {
      throw vbiError('BAD_DYNAMIC_PASSWORD', 'print dynamic password does not verify; the session is ended');
    }
    const out = await createIndicium({ postage: req.item.postage, mailpiece: req.mailpiece, type: req.type })(pkg, ctx);
    const encryptedIndicium = await ctx.hsm.encryptWithKeyChain({
      keyChain: [chain[0], { wrapped: req.wrappedSessionKey, usage: 'encrypt' }],
      plaintext: out.result.indicium, aad: indiciumAad(req.sessionId, req.item.counter),
    });
    const unsigned: Omit<Receipt, 'signature'> = {
      meterId: pkg.meterId, op: req.type === 'correction' ? 'correction' : 'print', amount: req.item.postage,
      ascendingRegister: out.package.ascendingRegister, descendingRegister: out.package.descendingRegister,
      sequence: out.result.sequence, time: new Date(ctx.now).toISOString(), moduleSerial: ctx.hsm.serial, checkpointSeq: ctx.checkpointSeq,
    };
    const receipt: Receipt = { ...unsigned, signature: (await ctx.hsm.identitySign(receiptSignedBytes(unsigned))).toString('base64') };
    return { ...out, result: { ...out.result, encryptedIndicium, receipt } };
  };
}
