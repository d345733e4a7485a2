import { isVbiError, vbiError } from '@vbi/core/errors';
import type { OaepHash } from './client-state';
import type { ModuleChallengeAnswer } from './wire';

/**
 * What the SDK and the web app's client share about registration step 1b's answer (docs/protocol.md
 * 1b and 8), with no crypto of their own: each checks the signature and the chain with its own
 * (node:crypto, WebCrypto).
 */

const OAEP_HASHES: readonly OaepHash[] = ['sha1', 'sha256'];

/** The answer is from the module asked, names an OAEP hash the client has, and is complete; CERT_INVALID otherwise. */
export function checkChallengeAnswer(proof: ModuleChallengeAnswer | null | undefined, serial: string): asserts proof is ModuleChallengeAnswer {
  if (proof?.moduleSerial !== serial) throw vbiError('CERT_INVALID', `asked module ${serial}, answered by ${String(proof?.moduleSerial)}`);
  if (!OAEP_HASHES.includes(proof.oaepHash)) throw vbiError('CERT_INVALID', `module ${serial}: unsupported OAEP hash '${String(proof.oaepHash)}'`);
  if (typeof proof.transportKey !== 'string' || typeof proof.signature !== 'string' || !Array.isArray(proof.certificateChain)) {
    throw vbiError('CERT_INVALID', `module ${serial}: the challenge answer is incomplete`);
  }
}

/**
 * The refusals after which a client moves to another module (docs/protocol.md 8): the service
 * has no module with the key file's serial (UNKNOWN_MODULE), or that module is not available
 * (NO_MODULE). Both come before the module runs anything: nothing committed, so the request may go
 * to another module with secrets encrypted to it.
 */
const MOVE_CODES = ['UNKNOWN_MODULE', 'NO_MODULE'] as const;

/** True for an error after which session-open (and the SDK's re-key) move to another module and try once more. */
export function callsForMove(e: unknown): boolean {
  return MOVE_CODES.some((c) => isVbiError(e, c));
}

/**
 * `attempt`, and when the service refuses it for the module (callsForMove) and `move` finds
 * another module, `attempt` once more: it encrypts its secrets to the key file's module, now the new one.
 */
export async function moveOnceIfRefused<T>(attempt: () => Promise<T>, move: () => Promise<string | undefined>): Promise<T> {
  try {
    return await attempt();
  } catch (e) {
    // refused before the module ran anything: move, then try with secrets for the new module
    if (!callsForMove(e) || !(await move())) throw e;
    return attempt();
  }
}
