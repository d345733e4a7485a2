import { vbiError } from '../errors';
import type { Operation, OperationalRequest, OperationalResponse, RegisterEcho } from './messages';

/**
 * The client side of the operational envelope (docs/protocol.md 2), shared by the SDK (node:crypto)
 * and the web app (WebCrypto): they differ only in how they compute and compare the HMAC.
 */

/**
 * What the client MACs and sends: the module's last challenge, the client's register copy and the
 * body after a JSON round trip, so the MAC covers exactly what the service will parse (no
 * undefined members, no non-JSON values).
 */
export function unsignedEnvelope<B>(req: { meterId: string; op: Operation; challenge: string; registers: RegisterEcho; body: B }): Omit<OperationalRequest<B>, 'mac'> {
  const body = JSON.parse(JSON.stringify(req.body ?? {})) as B;
  return { meterId: req.meterId, op: req.op, challenge: req.challenge, registers: { ascending: req.registers.ascending, descending: req.registers.descending }, body };
}

/** Registers as the protocol carries them: two non-negative safe integers. */
export function isRegisters(r: unknown): r is RegisterEcho {
  const x = r as Partial<RegisterEcho> | null;
  return !!x && Number.isSafeInteger(x.ascending) && Number.isSafeInteger(x.descending) && (x.ascending as number) >= 0 && (x.descending as number) >= 0;
}

/**
 * An operational response as far as it can be read before its MAC is checked: BAD_MAC unless it
 * has a challenge, registers and a receipt. The caller checks the MAC next, then
 * checkResponseAddressed.
 */
export function responseToCheck<R>(response: unknown, op: Operation): Omit<OperationalResponse<R>, 'mac'> & { mac: unknown } {
  const r = response as Partial<OperationalResponse<R>> | null;
  if (!r || typeof r !== 'object' || typeof r.challenge !== 'string' || !isRegisters(r.registers) || !r.receipt || typeof r.receipt !== 'object') {
    throw vbiError('BAD_MAC', `the ${op} response is not an operational response`);
  }
  return r as Omit<OperationalResponse<R>, 'mac'> & { mac: unknown };
}

/** After the MAC: the response answers our meter and op, and carries a challenge (BAD_MAC otherwise). */
export function checkResponseAddressed<R>(r: Omit<OperationalResponse<R>, 'mac'> & { mac: unknown }, meterId: string, op: Operation): OperationalResponse<R> {
  if (r.meterId !== meterId || r.op !== op) {
    throw vbiError('BAD_MAC', `the response answers ${String(r.meterId)}/${String(r.op)}, not ${meterId}/${op}`);
  }
  if (Buffer.from(r.challenge, 'base64').length === 0) throw vbiError('BAD_MAC', `the ${op} response carries no challenge`);
  return r as OperationalResponse<R>;
}

/**
 * Codes that mean the client's copy is not the module's and nothing happened: the challenge is
 * not the module's last (an answer was lost, the key file is older than the meter), or the
 * registers differ (a key file whose registers were lost or edited). The client resyncs —
 * adopting only registers the module signed and MACed for its nonce — and sends the request
 * again; if the resync itself fails, the original error is reported.
 */
const OUT_OF_STEP_CODES: readonly string[] = ['STALE_CHALLENGE', 'REGISTER_MISMATCH'];

/** True for an error code after which the client resyncs and sends the request once more. */
export function isOutOfStepCode(code: string): boolean {
  return OUT_OF_STEP_CODES.includes(code);
}

/**
 * The signed receipt of a MAC-checked response names the same meter, op and registers as the
 * response (CERT_INVALID otherwise). The caller then checks its signature with its own crypto.
 */
export function checkReceiptMatchesResponse(response: OperationalResponse<unknown>): void {
  const rc = response.receipt;
  if (rc.meterId !== response.meterId || rc.op !== response.op
    || rc.ascendingRegister !== response.registers.ascending || rc.descendingRegister !== response.registers.descending) {
    throw vbiError('CERT_INVALID', `the ${response.op} receipt does not match the response (meter, op or registers)`);
  }
}
