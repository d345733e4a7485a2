import { createHash } from 'node:crypto';
import { HsmModule } from '../hsm/hsm-module';

/**
 * Journal rows: every module command appends one, in the same transaction as the package and
 * the module's checkpoint. The row carries the checkpoint record (MAC'd by the module; its
 * prevDigest chains a module's rows in sequence order), the command's details encrypted under
 * the package encryption key, and a module MAC over both:
 *
 *   module_mac = MAC("VBIJ" || SHA-256(checkpoint) || SHA-256(payload))
 */
const DOMAIN = Buffer.from('VBIJ', 'ascii');

function macInput(checkpoint: Buffer, payload: Buffer): Buffer {
  const h = (b: Buffer) => createHash('sha256').update(b).digest();
  return Buffer.concat([DOMAIN, h(checkpoint), h(payload)]);
}

export async function sealJournalPayload(hsm: HsmModule, checkpoint: Buffer, details: Record<string, unknown>): Promise<{ payload: Buffer; moduleMac: Buffer }> {
  const payload = await hsm.encryptSecrets({ plaintext: Buffer.from(JSON.stringify(details), 'utf8'), aad: checkpoint });
  return { payload, moduleMac: await hsm.mac(macInput(checkpoint, payload)) };
}

export function verifyJournalMac(hsm: HsmModule, checkpoint: Buffer, payload: Buffer, moduleMac: Buffer): Promise<boolean> {
  return hsm.verifyMac(macInput(checkpoint, payload), moduleMac);
}

export async function openJournalPayload(hsm: HsmModule, checkpoint: Buffer, payload: Buffer): Promise<Record<string, unknown>> {
  return JSON.parse((await hsm.decryptSecrets({ ciphertext: payload, aad: checkpoint })).toString('utf8'));
}
