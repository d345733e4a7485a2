import type { Knex } from 'knex';
import type { ModuleToken } from '../module/module-token';
import { openPackage } from '../module/package-seal';
import { parseCheckpoint } from '../module/checkpoint';
import { MASTER_PSD_ID, masterRegisters } from '../module/commands/master-psd';
import { metersWithMovements } from '../db/repositories/meters';
import { poolRowAll } from '../db/repositories/pool';
import { checkpointsOfType } from '../db/repositories/journal';
import { auditRecordsOfKind } from '../db/repositories/audit-log';

/**
 * The conservation invariants, in integer mills:
 *  - per meter: AR + DR = value downloaded - value refunded (from the journal);
 *  - system: pool available + sum(DR) + sum(AR) = bought from the post - refunds paid out;
 *  - stock: bought from the post = the master PSD's `pool-purchase` records + the modules' signed
 *    `pool-purchased` audit records of the purchases before the master PSD (+ the stock entered
 *    before purchases were signed, kept apart by sql/0200).
 * With a module (`hsm`), AR and DR are read from the sealed packages (the authority) — the pool's
 * from the master PSD once it is sealed — and a row whose copy columns differ from its package
 * is reported too; without one, from the copies.
 */
export async function conservation(db: Knex, opts: { hsm?: ModuleToken } = {}): Promise<{ violations: string[]; system: { left: number; right: number } }> {
  const violations: string[] = [];
  const rows = await metersWithMovements(db);
  let sumAr = 0;
  let sumDr = 0;
  for (const r of rows) {
    let ar = r.ascending_register as number;
    let dr = r.descending_register as number;
    if (opts.hsm) {
      try {
        const pkg = await openPackage(opts.hsm, r.package, r.meter_id);
        if (pkg.ascendingRegister !== ar || pkg.descendingRegister !== dr) {
          violations.push(`meter ${r.meter_id}: the row's register copies (AR ${ar}, DR ${dr}) differ from its sealed package (AR ${pkg.ascendingRegister}, DR ${pkg.descendingRegister})`);
        }
        ar = pkg.ascendingRegister;
        dr = pkg.descendingRegister;
      } catch (e) {
        violations.push(`meter ${r.meter_id}: sealed package does not open: ${(e as Error).message}`);
      }
    }
    sumAr += ar;
    sumDr += dr;
    const rhs = Number(r.downloaded ?? 0) - Number(r.refunded ?? 0);
    if (ar + dr !== rhs) violations.push(`meter ${r.meter_id}: AR + DR = ${ar + dr} but downloaded - refunded = ${rhs}`);
  }
  const row = await poolRowAll(db);
  const pool = { available: Number(row.available), purchased: Number(row.purchased), refunds_paid: Number(row.refunds_paid), purchased_unsigned: row.purchased_unsigned };
  if (opts.hsm && row.package) {
    try {
      const m = masterRegisters(await openPackage(opts.hsm, row.package, MASTER_PSD_ID));
      const sealed = { available: m.descendingRegister, purchased: m.purchased, refunds_paid: m.refundRegister };
      if (sealed.available !== pool.available || sealed.purchased !== pool.purchased || sealed.refunds_paid !== pool.refunds_paid) {
        violations.push(`pool: the row's register copies (bought ${pool.purchased}, available ${pool.available}, refunds paid ${pool.refunds_paid}) differ from the sealed master PSD (bought ${sealed.purchased}, available ${sealed.available}, refunds paid ${sealed.refunds_paid})`);
      }
      Object.assign(pool, sealed);
    } catch (e) {
      violations.push(`pool: the sealed master PSD does not open: ${(e as Error).message}`);
    }
  }
  const left = pool.available + sumAr + sumDr;
  const right = pool.purchased - pool.refunds_paid;
  if (left !== right) violations.push(`system: pool + DR + AR = ${left} but bought - refunds paid = ${right}`);
  const signed = await signedStock(db);
  const unsigned = Number(pool.purchased_unsigned ?? 0);
  if (pool.purchased !== unsigned + signed) {
    violations.push(`stock: the pool says ${pool.purchased} mills bought from the post, the modules' purchase records ${signed} (+ ${unsigned} entered before purchases were signed)`);
  }
  return { violations, system: { left, right } };
}

/**
 * Stock bought from the post as the modules recorded it: the amounts of the master PSD's
 * `pool-purchase` checkpoint records (their MACs and chain are what `npm run verify-journal`
 * checks), and of the signed `pool-purchased` audit records of purchases entered before the
 * master PSD, each post's reference once (`npm run audit -- verify` checks those, docs/audit.md).
 */
async function signedStock(db: Knex): Promise<number> {
  const records = await checkpointsOfType(db, MASTER_PSD_ID, 'pool-purchase');
  let total = 0;
  for (const r of records) {
    try {
      total += parseCheckpoint(r.checkpoint).record.amount;
    } catch {
      // an unreadable record counts nothing; verify-journal names it
    }
  }
  return total + await auditedStock(db);
}

async function auditedStock(db: Knex): Promise<number> {
  const rows = await auditRecordsOfKind<{ details?: { reference?: unknown; amount?: unknown } }>(db, 'pool-purchased');
  const byReference = new Map<string, number>();
  for (const { record } of rows) {
    const reference = String(record.details?.reference ?? '');
    const amount = Number(record.details?.amount);
    if (!byReference.has(reference) && Number.isSafeInteger(amount) && amount > 0) byReference.set(reference, amount);
  }
  return [...byReference.values()].reduce((a, b) => a + b, 0);
}
