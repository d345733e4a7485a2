import { constants, createHmac, createPublicKey, publicEncrypt, type KeyObject } from 'node:crypto';
import { DynamicPasswordInput, Operation, OperationalRequest, RegisterEcho, dynamicPasswordInput, requestMacInput } from '@vbi/core/protocol/messages';

/**
 * The protocol's message construction (docs/protocol.md) with every input under the fuzzer's
 * control, so a message can be correctly MAC'd around a wrong challenge, foreign registers or a
 * body that only a semantic check can refuse.
 */
export interface UnsignedEnvelope<B = unknown> {
  meterId: string;
  op: Operation | string;
  challenge: string;
  registers: RegisterEcho | unknown;
  body: B;
}

export function macOf(hmk: Buffer, unsigned: UnsignedEnvelope): string {
  return createHmac('sha256', hmk).update(requestMacInput(unsigned as Omit<OperationalRequest, 'mac'>)).digest('base64');
}

/** A correctly MAC'd envelope (with whatever the fields say). */
export function signEnvelope<B>(hmk: Buffer, unsigned: UnsignedEnvelope<B>): UnsignedEnvelope<B> & { mac: string } {
  return { ...unsigned, mac: macOf(hmk, unsigned) };
}

/** The bytes the MAC covers, or undefined when the fields cannot even be put in canonical form. */
export function macInputOf(env: unknown): Buffer | undefined {
  if (!env || typeof env !== 'object') return undefined;
  try {
    return requestMacInput(env as Omit<OperationalRequest, 'mac'>);
  } catch {
    return undefined;
  }
}

export function dynamicPassword(hmk: Buffer, input: DynamicPasswordInput): string {
  return createHmac('sha256', hmk).update(dynamicPasswordInput(input)).digest('base64');
}

/** RSA-OAEP encryption of a client secret to a transport key (SPKI DER or a key object). */
export function encryptTo(key: Buffer | KeyObject, oaepHash: string, secret: Buffer): string {
  const k = Buffer.isBuffer(key) ? createPublicKey({ key, format: 'der', type: 'spki' }) : key;
  return publicEncrypt({ key: k, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash }, secret).toString('base64');
}

/** The challenge and registers of a successful operational answer (print and correction wrap it in `authorization`). */
export function nextChallengeOf(json: unknown): { challenge: string; registers: RegisterEcho } | undefined {
  const j = json as { challenge?: unknown; registers?: RegisterEcho; authorization?: { challenge?: unknown; registers?: RegisterEcho } } | undefined;
  const resp = j?.authorization ?? j;
  if (typeof resp?.challenge !== 'string') return undefined;
  const registers = (j?.registers ?? resp.registers) as RegisterEcho | undefined;
  return registers ? { challenge: resp.challenge, registers } : undefined;
}
