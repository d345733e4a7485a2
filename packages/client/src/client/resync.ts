import { randomBytes, verify, X509Certificate } from 'node:crypto';
import { vbiError } from '@vbi/core/errors';
import { ResyncRequest, ResyncResponse, resyncMacInput, resyncResponseMacInput, resyncSignedBytes } from '@vbi/core/protocol/messages';
import { hmacSha256, macMatches } from './client-crypto';
import { isRegisters } from '@vbi/core/protocol/envelope';
import type { KnownModule } from './client-state';

/**
 * The client's half of the resync exchange (docs/protocol.md 6): a fresh nonce and the client's
 * clock under the HMK, in place of the challenge the client may have lost.
 */
export function buildResyncRequest(req: { meterId: string; hmk: Buffer; afterSequence: number; clientTime: number }): ResyncRequest {
  const unsigned = { meterId: req.meterId, clientNonce: randomBytes(32).toString('base64'), clientTime: req.clientTime, afterSequence: req.afterSequence };
  return { ...unsigned, mac: hmacSha256(req.hmk, resyncMacInput(unsigned)).toString('base64') };
}

/**
 * Checks a resync answer: it carries our nonce and meter, its HMAC verifies with the HMK
 * (BAD_MAC: not from a module holding our HMK, or a replay of another exchange), and the
 * identity key of a module verified at registration signed it (CERT_INVALID). Only then may its
 * challenge and registers replace the client's.
 */
export function checkResyncResponse(req: { response: unknown; request: ResyncRequest; hmk: Buffer; modules: readonly KnownModule[] }): ResyncResponse {
  const r = req.response as ResyncResponse | null;
  if (!r || typeof r !== 'object' || typeof r.challenge !== 'string' || !isRegisters(r.registers) || !Array.isArray(r.transactions)
    || typeof r.signature !== 'string' || !Number.isSafeInteger(r.sequence) || typeof r.moduleSerial !== 'string') {
    throw vbiError('BAD_MAC', 'the resync answer is not a resync answer');
  }
  const { mac, ...withSignature } = r;
  if (!macMatches(req.hmk, resyncResponseMacInput(withSignature), mac)) throw vbiError('BAD_MAC', 'the resync answer HMAC does not verify with our HMK');
  if (r.meterId !== req.request.meterId || r.clientNonce !== req.request.clientNonce) {
    throw vbiError('BAD_MAC', 'the resync answer is not for this request (meter or nonce differ)');
  }
  if (Buffer.from(r.challenge, 'base64').length === 0) throw vbiError('BAD_MAC', 'the resync answer carries no challenge');
  const module = req.modules.find((m) => m.serial === r.moduleSerial);
  if (!module) throw vbiError('CERT_INVALID', `resync answer signed by module '${r.moduleSerial}', which this client has not verified`);
  const { signature, ...unsigned } = withSignature;
  const key = new X509Certificate(module.certificateChain[0]).publicKey;
  let ok = false;
  try {
    ok = verify('sha256', resyncSignedBytes(unsigned), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(signature, 'base64'));
  } catch {
    ok = false;
  }
  if (!ok) throw vbiError('CERT_INVALID', `the resync answer signature does not verify with module ${r.moduleSerial}'s identity key`);
  return r;
}
