import { vbiError } from '../errors';
import {
  Operation, OperationalRequest, OperationalResponse, RegisterEcho, requestMacInput, responseMacInput,
} from '../protocol/messages';
import { hmacSha256, macMatches } from './client-crypto';
import type { ReceiptVerifier } from './module-trust';

/**
 * The operational envelope of docs/protocol.md 2: the module's last challenge, the client's
 * register copy, the body, and HMAC-SHA256(HMK, requestMacInput(...)). The body goes through a
 * JSON round trip first, so the MAC covers exactly what the service will parse (no undefined
 * members, no non-JSON values).
 */
export function buildEnvelope<B>(req: { meterId: string; op: Operation; challenge: string; registers: RegisterEcho; body: B; hmk: Buffer }): OperationalRequest<B> {
  const body = JSON.parse(JSON.stringify(req.body ?? {})) as B;
  const unsigned = { meterId: req.meterId, op: req.op, challenge: req.challenge, registers: { ascending: req.registers.ascending, descending: req.registers.descending }, body };
  const mac = hmacSha256(req.hmk, requestMacInput(unsigned as Omit<OperationalRequest, 'mac'>)).toString('base64');
  return { ...unsigned, mac };
}

/**
 * Checks an operational response: it answers our meter and op, its MAC verifies with the
 * HMK (BAD_MAC otherwise: not from a module holding our HMK, or modified on the way), and it
 * carries a well-formed challenge and registers. Returns it typed.
 */
export function checkResponseMac<R>(req: { response: unknown; meterId: string; op: Operation; hmk: Buffer }): OperationalResponse<R> {
  const r = req.response as Partial<OperationalResponse<R>> | null;
  if (!r || typeof r !== 'object' || typeof r.challenge !== 'string' || !r.registers || !isRegisters(r.registers) || !r.receipt || typeof r.receipt !== 'object') {
    throw vbiError('BAD_MAC', `the ${req.op} response is not an operational response`);
  }
  if (!macMatches(req.hmk, responseMacInput(r as Omit<OperationalResponse, 'mac'>), r.mac)) {
    throw vbiError('BAD_MAC', `the ${req.op} response HMAC does not verify with our HMK`);
  }
  if (r.meterId !== req.meterId || r.op !== req.op) {
    throw vbiError('BAD_MAC', `the response answers ${String(r.meterId)}/${String(r.op)}, not ${req.meterId}/${req.op}`);
  }
  if (Buffer.from(r.challenge, 'base64').length === 0) throw vbiError('BAD_MAC', `the ${req.op} response carries no challenge`);
  return r as OperationalResponse<R>;
}

/**
 * Checks the signed receipt of a MAC-checked response: same meter, op and registers as the
 * response, signed by a module identity key verified at registration. CERT_INVALID otherwise.
 */
export function checkResponseReceipt(response: OperationalResponse<unknown>, receipts: ReceiptVerifier): void {
  const rc = response.receipt;
  if (rc.meterId !== response.meterId || rc.op !== response.op
    || rc.ascendingRegister !== response.registers.ascending || rc.descendingRegister !== response.registers.descending) {
    throw vbiError('CERT_INVALID', `the ${response.op} receipt does not match the response (meter, op or registers)`);
  }
  if (!receipts.verify(rc)) throw vbiError('CERT_INVALID', `the ${response.op} receipt signature does not verify with module ${rc.moduleSerial}'s identity key`);
}

/** Registers as the protocol carries them: two non-negative safe integers. */
export function isRegisters(r: unknown): r is RegisterEcho {
  const x = r as Partial<RegisterEcho> | null;
  return !!x && Number.isSafeInteger(x.ascending) && Number.isSafeInteger(x.descending) && (x.ascending as number) >= 0 && (x.descending as number) >= 0;
}
