import { vbiError } from '@vbi/core/errors';
import { CommandOutcome } from '../psd-engine';
import { PsdPackage } from '@vbi/core/psd/psd-package';
import { MAP_SLOTS } from '../meter-map';
import { Registers, registersOf } from './guards';

/**
 * The vendor's master PSD (WO 99/41690, "Master PSD 40"): the pool of postage bought from the
 * post, kept as a sealed PSD package under the same protection as a meter's — the package MAC,
 * a leaf of the meter map whose root is in the modules' rings, and a journal record for every
 * change (docs/ledger.md, "The master PSD"). Its registers, as WO 99/41690 defines them:
 *  - descending register: postage the vendor has to sell to meters (the pool's `available`);
 *  - ascending register: postage sold to meters, less what full refunds brought back;
 *  - refund register: postage refunded to mailers for spoilage (paid out, left the system).
 * Bought from the post = ascending + descending register.
 *
 * The id and the slot are fixed and reserved: no meter gets either. The fixed slot is what makes
 * a master PSD deleted from the database impossible to create again (the slot is no longer empty
 * in the map the rings hold).
 */
export const MASTER_PSD_ID = 'MASTER-PSD';
/** The last slot of the map shard; meters take slots from 0 upward. */
export const MASTER_PSD_SLOT = MAP_SLOTS - 1;

/** What moves the master PSD: stock from the post, or the pool's side of a meter's command. */
export type PoolMovement =
  /** Stock bought from the post (the post's reference in the journal details). */
  | { kind: 'purchase'; amount: number }
  /** A PVD: postage sold to a meter (POOL_EXHAUSTED when the pool cannot cover it). */
  | { kind: 'download'; amount: number; meterId: string }
  /** A full refund: the meter's remaining postage comes back to the pool. */
  | { kind: 'return'; amount: number; meterId: string }
  /** A partial (spoilage) refund: paid out to the mailer; it leaves the system. */
  | { kind: 'payout'; amount: number; meterId: string };

/** The pool registers of a database from before the master PSD was sealed (the pool row's columns). */
export interface PoolBaseline { purchased: number; available: number; refundsPaid: number }

export type MasterRegisters = Registers & { purchased: number };

/**
 * The master PSD's command. `baseline`: the pool row's registers, used only when the master PSD
 * does not exist yet (the first movement creates it from them, in the same record).
 */
export function masterPsdCommand(movement: PoolMovement, baseline: PoolBaseline) {
  return async (opened: PsdPackage | null): Promise<CommandOutcome<MasterRegisters>> => {
    const pkg = opened ?? newMasterPsd(baseline);
    if (pkg.meterId !== MASTER_PSD_ID) throw new Error('the master PSD command runs on the master PSD only');
    const v = movement.amount;
    if (!Number.isSafeInteger(v) || v <= 0) throw vbiError('INVALID_AMOUNT', `a pool movement is a positive number of mills, not ${v}`);
    let next: PsdPackage;
    switch (movement.kind) {
      case 'purchase':
        next = { ...pkg, descendingRegister: pkg.descendingRegister + v };
        break;
      case 'download':
        if (pkg.descendingRegister < v) throw vbiError('POOL_EXHAUSTED', `pool holds ${pkg.descendingRegister} mills, the PVD asks ${v}`);
        next = { ...pkg, descendingRegister: pkg.descendingRegister - v, ascendingRegister: pkg.ascendingRegister + v };
        break;
      case 'return':
        // a meter can only give back what the pool sold it
        if (pkg.ascendingRegister < v) throw new Error(`master PSD: a return of ${v} mills exceeds the ${pkg.ascendingRegister} mills sold`);
        next = { ...pkg, descendingRegister: pkg.descendingRegister + v, ascendingRegister: pkg.ascendingRegister - v };
        break;
      case 'payout':
        next = { ...pkg, refundRegister: pkg.refundRegister + v };
        break;
    }
    if (!Number.isSafeInteger(next.ascendingRegister + next.descendingRegister + next.refundRegister)) {
      throw vbiError('INVALID_AMOUNT', 'the master PSD would pass 2^53 - 1 mills');
    }
    return {
      package: next, type: movement.kind === 'purchase' ? 'pool-purchase' : 'pool-transfer', amount: v,
      result: masterRegisters(next),
    };
  };
}

export function masterRegisters(pkg: PsdPackage): MasterRegisters {
  return { ...registersOf(pkg), purchased: pkg.ascendingRegister + pkg.descendingRegister };
}

function newMasterPsd(b: PoolBaseline): PsdPackage {
  if (![b.purchased, b.available, b.refundsPaid].every((n) => Number.isSafeInteger(n) && n >= 0) || b.available > b.purchased) {
    throw vbiError('POOL_INCONSISTENT', `the pool row cannot seed the master PSD: bought ${b.purchased}, available ${b.available}, refunds paid ${b.refundsPaid} mills`);
  }
  return {
    meterId: MASTER_PSD_ID, recordCounter: 0, pieceCounter: 0, state: 'active',
    ascendingRegister: b.purchased - b.available, descendingRegister: b.available,
    maxDescendingRegister: Number.MAX_SAFE_INTEGER, refundRegister: b.refundsPaid,
    licensingZip: '', indiciumCertSerial: '', indiciumKeyAlgorithm: null, indiciumKeyExpiry: 0, userSecretsExpiry: 0,
    lastTransactionTime: 0, licence: 'none', licenceId: '',
    secrets: { wrappedIndiciumKey: Buffer.alloc(0), wrappedUserSecretsKey: Buffer.alloc(0), userSecrets: Buffer.alloc(0), lastChallenge: Buffer.alloc(0), passphraseHistory: [] },
  };
}
