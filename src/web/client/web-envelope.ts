import { vbiError } from '../../errors';
import { isRegisters } from '../../client/envelope';
import { Operation, OperationalRequest, OperationalResponse, RegisterEcho, requestMacInput, responseMacInput } from '../../protocol/messages';
import { hmacSha256, macMatches } from '../crypto/web-crypto';

/**
 * The SDK's buildEnvelope (src/client/envelope.ts) on WebCrypto: the body through a JSON round
 * trip, then HMAC-SHA256(HMK, requestMacInput(...)). Same inputs, same envelope.
 */
export async function buildWebEnvelope<B>(req: { meterId: string; op: Operation; challenge: string; registers: RegisterEcho; body: B; hmk: Uint8Array }): Promise<OperationalRequest<B>> {
  const body = JSON.parse(JSON.stringify(req.body ?? {})) as B;
  const unsigned = { meterId: req.meterId, op: req.op, challenge: req.challenge, registers: { ascending: req.registers.ascending, descending: req.registers.descending }, body };
  const mac = (await hmacSha256(req.hmk, requestMacInput(unsigned as Omit<OperationalRequest, 'mac'>))).toString('base64');
  return { ...unsigned, mac };
}

/** The SDK's checkResponseMac on WebCrypto: BAD_MAC unless the answer is ours, for our op, MAC'd with our HMK, with a challenge. */
export async function checkWebResponseMac<R>(req: { response: unknown; meterId: string; op: Operation; hmk: Uint8Array }): Promise<OperationalResponse<R>> {
  const r = req.response as Partial<OperationalResponse<R>> | null;
  if (!r || typeof r !== 'object' || typeof r.challenge !== 'string' || !isRegisters(r.registers) || !r.receipt || typeof r.receipt !== 'object') {
    throw vbiError('BAD_MAC', `the ${req.op} response is not an operational response`);
  }
  if (!(await macMatches(req.hmk, responseMacInput(r as Omit<OperationalResponse, 'mac'>), r.mac))) {
    throw vbiError('BAD_MAC', `the ${req.op} response HMAC does not verify with our HMK`);
  }
  if (r.meterId !== req.meterId || r.op !== req.op) throw vbiError('BAD_MAC', `the response answers ${String(r.meterId)}/${String(r.op)}, not ${req.meterId}/${req.op}`);
  if (Buffer.from(r.challenge, 'base64').length === 0) throw vbiError('BAD_MAC', `the ${req.op} response carries no challenge`);
  return r as OperationalResponse<R>;
}
