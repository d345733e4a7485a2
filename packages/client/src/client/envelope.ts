import { isVbiError, vbiError } from '@vbi/core/errors';
import {
  Operation, OperationalRequest, OperationalResponse, RegisterEcho, requestMacInput, responseMacInput,
} from '@vbi/core/protocol/messages';
import { checkReceiptMatchesResponse, isOutOfStepCode, checkResponseAddressed, responseToCheck, unsignedEnvelope } from '@vbi/core/protocol/envelope';
import { hmacSha256, macMatches } from './client-crypto';
import type { ReceiptVerifier } from './module-trust';

/** The operational envelope of docs/protocol.md 2 (packages/core/src/protocol/envelope.ts), MAC'd with the HMK. */
export function buildEnvelope<B>(req: { meterId: string; op: Operation; challenge: string; registers: RegisterEcho; body: B; hmk: Buffer }): OperationalRequest<B> {
  const unsigned = unsignedEnvelope(req);
  return { ...unsigned, mac: hmacSha256(req.hmk, requestMacInput(unsigned as Omit<OperationalRequest, 'mac'>)).toString('base64') };
}

/**
 * Checks an operational response: it answers our meter and op, its MAC verifies with the
 * HMK (BAD_MAC otherwise: not from a module holding our HMK, or modified on the way), and it
 * carries a well-formed challenge and registers. Returns it typed.
 */
export function checkResponseMac<R>(req: { response: unknown; meterId: string; op: Operation; hmk: Buffer }): OperationalResponse<R> {
  const r = responseToCheck<R>(req.response, req.op);
  if (!macMatches(req.hmk, responseMacInput(r as Omit<OperationalResponse, 'mac'>), r.mac)) {
    throw vbiError('BAD_MAC', `the ${req.op} response HMAC does not verify with our HMK`);
  }
  return checkResponseAddressed(r, req.meterId, req.op);
}

/**
 * Checks the signed receipt of a MAC-checked response: same meter, op and registers as the
 * response, signed by a module identity key verified at registration. CERT_INVALID otherwise.
 */
export function checkResponseReceipt(response: OperationalResponse<unknown>, receipts: ReceiptVerifier): void {
  checkReceiptMatchesResponse(response);
  const rc = response.receipt;
  if (!receipts.verify(rc)) throw vbiError('CERT_INVALID', `the ${response.op} receipt signature does not verify with module ${rc.moduleSerial}'s identity key`);
}

/** True for STALE_CHALLENGE or REGISTER_MISMATCH (packages/core/src/protocol/envelope.ts): resync, then send once more. */
export function outOfStep(e: unknown): boolean {
  return isVbiError(e) && isOutOfStepCode(e.code);
}
