import { randomBytes } from 'node:crypto';
import { Ledger } from './ledger';
import { MeterGen } from '../pki/metergen';

/**
 * Keeps the pool of certified, unassigned meters at or above `minimum` (registration takes
 * meters from it), creating the missing ones with MeterGen. Returns the meters created. Their
 * ids start with `prefix`: the shard's (packages/server/src/config/shard.ts, meterIdPrefix).
 */
export async function keepMeterPool(req: {
  ledger: Ledger; metergen: MeterGen; minimum: number; maxDescendingRegister: number; prefix?: string;
}): Promise<string[]> {
  const created: string[] = [];
  let have = await req.ledger.unassignedMeters();
  while (have < req.minimum) {
    const meterId = `${req.prefix ?? 'VBI'}-${randomBytes(5).toString('hex').toUpperCase()}`;
    await req.metergen.createMeter({ meterId, maxDescendingRegister: req.maxDescendingRegister });
    created.push(meterId);
    have++;
  }
  return created;
}
