import { vbiError } from '@vbi/core/errors';
import { checkResponseAddressed, responseToCheck, unsignedEnvelope } from '@vbi/core/protocol/envelope';
import { Operation, OperationalRequest, OperationalResponse, RegisterEcho, requestMacInput, responseMacInput } from '@vbi/core/protocol/messages';
import { hmacSha256, macMatches } from '../crypto/web-crypto';

/** The SDK's buildEnvelope (packages/client/src/client/envelope.ts) on WebCrypto: same inputs, same envelope. */
export async function buildWebEnvelope<B>(req: { meterId: string; op: Operation; challenge: string; registers: RegisterEcho; body: B; hmk: Uint8Array }): Promise<OperationalRequest<B>> {
  const unsigned = unsignedEnvelope(req);
  return { ...unsigned, mac: (await hmacSha256(req.hmk, requestMacInput(unsigned as Omit<OperationalRequest, 'mac'>))).toString('base64') };
}

/** The SDK's checkResponseMac on WebCrypto: BAD_MAC unless the answer is ours, for our op, MAC'd with our HMK, with a challenge. */
export async function checkWebResponseMac<R>(req: { response: unknown; meterId: string; op: Operation; hmk: Uint8Array }): Promise<OperationalResponse<R>> {
  const r = responseToCheck<R>(req.response, req.op);
  if (!(await macMatches(req.hmk, responseMacInput(r as Omit<OperationalResponse, 'mac'>), r.mac))) {
    throw vbiError('BAD_MAC', `the ${req.op} response HMAC does not verify with our HMK`);
  }
  return checkResponseAddressed(r, req.meterId, req.op);
}
