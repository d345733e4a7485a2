// Over 300 lines: one procedure, replayJournal, and the helpers only it uses.
import type { Knex } from 'knex';
import { vbiError } from '@vbi/core/errors';
import type { ModuleToken } from '../module/module-token';
import { CheckpointRing } from '../module/checkpoint-ring';
import { Checkpoint, digestOf } from '../module/checkpoint';
import { leafHash, pathNodes } from '../module/meter-map';
import { MASTER_PSD_ID, masterRegisters } from '../module/commands/master-psd';
import { openPackage } from '../module/package-seal';
import { ExportEntry, readExport, usable } from './journal-export';
import { openJournalPayload } from '../module/journal-seal';
import { MAP_SHARD, lockModuleAndMap, storeMap } from './pg-meter-map';
import { commitOrThrow } from '../db/commit';
import type { AuditRecord } from '../module/audit';
import { AuditChain } from '../module/audit-chain';
import { pgAuditStore } from './audit-store';
import { insertModuleRow, moduleCheckpointAndSeq, storeModuleCheckpoint } from '../db/repositories/modules';
import {
  enterStock, lockPoolAvailable, poolPackage, purchaseAmountOf, putBackPurchase, refundIntoPool, storeMasterPsd, takeFromPool,
} from '../db/repositories/pool';
import { continueIdSequences, putBackAccount, putBackCertificate, putBackIndicium, putBackPayment, putBackRefund } from '../db/repositories/record-rows';
import { insertAuditRecord, newestAuditSeqs } from '../db/repositories/audit-log';
import { setMapEpochNow } from '../db/repositories/meter-map';
import { insertMeterRow, meterExists, updateMeterRow } from '../db/repositories/meters';
import { insertRevocationReportOnce } from '../db/repositories/licence-queue';
import { insertJournalRow } from '../db/repositories/journal';

/** Where a module's ring stands against the database after a replay. */
export interface ModuleAfterReplay {
  moduleSerial: string;
  /** Records of this module replayed onto the database. */
  replayed: number;
  databaseSeq: number | null;
  ringSeq: number | null;
  /**
   * in-step: the ring's newest record is the database's; database-ahead: the module rolls its
   * ring forward at start; ring-ahead: records neither the database nor the export holds (listed
   * in `missing`; the module stays inhibited until officers decide); not-configured: no token
   * of this module in the configuration to ask.
   */
  state: 'in-step' | 'database-ahead' | 'ring-ahead' | 'not-configured';
  /** Ring records beyond everything the database now holds: postage presumed spent. */
  missing: Array<{ seq: number; meterId: string; type: string; amount: number; ascendingRegister: number; descendingRegister: number; at: string }>;
}

export interface ReplayReport {
  replayed: number;
  modules: ModuleAfterReplay[];
  /** Tables whose rows an export does not hold and that a replay therefore does not put back. */
  notRebuilt: string[];
  /** Exported indicium rows left out because they are not what their meter signed (edited before the export). */
  indiciaLeftOut: Array<{ indiciumId: number; reason: string }>;
  /** The modules' audit records put back: each module's exported records after the newest the database holds. */
  auditRecords: number;
  /** Stock bought from the post entered from the export's signed `pool-purchased` records (the database lacked them). */
  stockFromRecords: Array<{ reference: string; amount: number }>;
}

/** Rows the journal export does not carry: a replay leaves them as the restored database has them. */
const NOT_REBUILT = [
  'sessions (mailers open new ones)',
  'print_batches and idempotency_keys (answers to requests in flight when the database was lost)',
  'pool_purchases the export holds no signed record of (stock bought after the last export: give each to the replay with --stock REFERENCE=AMOUNT)',
  'payments not applied by a PVD record (pending or declined: ask the payment provider)',
  'license_requests, key_renewals, indicium_scans, fraud_reports, credentials',
  'audit records written after the last export (audit verify reports the gap against each module\'s token)',
];

/**
 * Rolls a restored database forward from a journal export (docs/journal-export.md): for each
 * module, the export's records after the database's checkpoint, all modules together in meter
 * map order. Each record must chain to the module's checkpoint in the database, carry the next
 * map epoch, and rebuild exactly the map root it names; then its journal row, the meter row
 * (from the sealed package the record names), the map path, the module row, the pool and the
 * rows it wrote (indicia, refunds, payments, certificates, accounts) are written — all records in
 * one transaction, so a replay that fails leaves the database as it was. Run with the service
 * stopped (the caller holds the module leases). Afterwards each module's ring is compared with
 * the database: what the ring holds beyond it is listed as postage presumed spent.
 */
export async function replayJournal(req: {
  db: Knex; hsm: ModuleToken; modules: ModuleToken[]; dir: string;
  /** Stock bought from the post after the restore point (the export does not hold it), entered first in the same transaction. */
  stock?: Array<{ reference: string; amount: number }>;
}): Promise<ReplayReport> {
  const exp = await readExport(req.hsm, req.dir);
  if (!usable(exp.findings)) {
    const first = exp.findings.find((f) => f.indicium === undefined)!;
    throw vbiError('JOURNAL_EXPORT_BROKEN', `the export in ${req.dir} does not verify: ${first.reason}`, { findings: exp.findings });
  }
  // indicium rows that are not what their meter signed are left out, and listed
  const refused = new Set(exp.findings.map((f) => f.indicium).filter((i): i is number => i !== undefined));
  const bySerial = new Map<string, Array<{ entry: ExportEntry; cp: Checkpoint }>>();
  for (const entry of exp.entries) {
    const cp = exp.records.get(entry.n)!;
    bySerial.set(cp.moduleSerial, [...(bySerial.get(cp.moduleSerial) ?? []), { entry, cp }]);
  }
  const counts = new Map<string, number>();
  let auditRecords = 0;
  const stockFromRecords: Array<{ reference: string; amount: number }> = [];
  const stockEntered: Array<{ reference: string; amount: number }> = [];
  const trx = await req.db.transaction();
  try {
    // what to replay: per module, the records after the database's checkpoint
    const todo: Array<{ entry: ExportEntry; cp: Checkpoint }> = [];
    for (const [serial, list] of bySerial) {
      const row = await moduleCheckpointAndSeq(trx, serial);
      const dbCheckpoint: Buffer | null = row?.checkpoint ?? null;
      let from = 0;
      if (dbCheckpoint) {
        const at = list.findIndex((x) => Buffer.from(x.entry.journal.checkpoint, 'base64').equals(dbCheckpoint));
        if (at >= 0) from = at + 1;
        else if (list[0].cp.seq > Number(row!.checkpoint_seq)) {
          throw vbiError('JOURNAL_REPLAY_FAILED', `module ${serial}: the export starts at sequence ${list[0].cp.seq}, after the database's ${row!.checkpoint_seq}, without its record: records between them are in neither`, { moduleSerial: serial });
        } else from = list.length; // the database is ahead of the export for this module
      }
      todo.push(...list.slice(from));
      counts.set(serial, list.length - from);
    }
    const sealedPool = (await poolPackage(trx))?.package;
    // stock bought from the post that the export's signed audit records hold: entered first, so
    // that the PVDs replayed after it can draw on it (its record is put back with the others)
    for (const a of exp.audit) {
      if (a.kind !== 'pool-purchased') continue;
      const reference = String(a.details.reference ?? '');
      const amount = Number(a.details.amount);
      if (!reference || !Number.isSafeInteger(amount) || amount <= 0) continue;
      const had = await purchaseAmountOf(trx, reference);
      if (had || sealedPool) continue;
      await enterStock(trx, { amount, reference, enteredBy: 'journal replay (signed record)' });
      stockFromRecords.push({ reference, amount });
    }
    for (const p of req.stock ?? []) {
      if (sealedPool) throw vbiError('BAD_REQUEST', "the restored database's pool is the sealed master PSD: stock bought from the post is in the export's master PSD records, --stock is for a database from before it");
      if (!Number.isSafeInteger(p.amount) || p.amount <= 0 || !p.reference) throw vbiError('BAD_REQUEST', `stock purchase ${p.reference}: a reference and a positive amount of mills`);
      const had = await purchaseAmountOf(trx, p.reference);
      if (had && Number(had.amount) !== p.amount) throw vbiError('POOL_PURCHASE_CONFLICT', `the post's reference ${p.reference} is in the database with ${had.amount} mills`);
      if (had) continue;
      await enterStock(trx, { amount: p.amount, reference: p.reference, enteredBy: 'journal replay' });
      stockEntered.push(p);
    }
    todo.sort((x, y) => x.cp.mapEpoch - y.cp.mapEpoch);
    for (const { entry, cp } of todo) await applyRecord(trx, req.hsm, entry, cp, refused);
    auditRecords = await putBackAudit(trx, exp.audit);
    // explicit ids were written: the sequences go on after them
    await continueIdSequences(trx);
    await commitOrThrow(trx);
  } catch (e) {
    if (!trx.isCompleted()) await trx.rollback().catch(() => undefined);
    throw e;
  }
  // stock the operator gave (--stock) is signed into the replaying module's chain like any
  // purchase (Ledger.purchaseFromPost); a crash before this leaves it unsigned, and conservation says so
  if (stockEntered.length > 0) {
    const chain = new AuditChain(req.hsm, pgAuditStore(req.db));
    await chain.open();
    for (const p of stockEntered) {
      await chain.append({
        kind: 'pool-purchased', at: new Date().toISOString(), reason: 'stock bought from the post, entered by the journal replay (--stock)',
        details: { amount: p.amount, reference: p.reference, operator: 'journal replay' },
      });
    }
  }
  const modules: ModuleAfterReplay[] = [];
  const serials = new Set([...bySerial.keys(), ...req.modules.map((m) => m.serial)]);
  for (const serial of [...serials].sort()) modules.push(await compareWithRing(req.db, serial, req.modules.find((m) => m.serial === serial), counts.get(serial) ?? 0));
  return {
    replayed: [...counts.values()].reduce((a, b) => a + b, 0), modules, notRebuilt: NOT_REBUILT,
    indiciaLeftOut: exp.findings.filter((f) => f.indicium !== undefined).map((f) => ({ indiciumId: f.indicium!, reason: f.reason })),
    auditRecords,
    stockFromRecords,
  };
}

/**
 * The modules' signed audit records the database lacks: per module, the exported records after
 * the newest it holds, in sequence order, as the service stores them (packages/server/src/ledger/audit-store.ts).
 * Their signatures and links are what `npm run audit -- verify` checks afterwards.
 */
async function putBackAudit(trx: Knex.Transaction, records: AuditRecord[]): Promise<number> {
  const newest = new Map<string, number>();
  for (const r of await newestAuditSeqs(trx)) {
    newest.set(r.module_serial, Number(r.seq));
  }
  let put = 0;
  for (const r of records) {
    if (r.seq <= (newest.get(r.moduleSerial) ?? 0)) continue;
    await insertAuditRecord(trx, { kind: r.kind, moduleSerial: r.moduleSerial, at: r.at, seq: r.seq, record: JSON.stringify(r) });
    newest.set(r.moduleSerial, r.seq);
    put++;
  }
  return put;
}

async function applyRecord(trx: Knex.Transaction, hsm: ModuleToken, entry: ExportEntry, cp: Checkpoint, refused: Set<number>): Promise<void> {
  const j = entry.journal;
  const where = `module ${cp.moduleSerial} sequence ${cp.seq}`;
  const fail = (why: string) => vbiError('JOURNAL_REPLAY_FAILED', `${where}: ${why}`, { moduleSerial: cp.moduleSerial, seq: cp.seq });
  const checkpoint = Buffer.from(j.checkpoint, 'base64');
  const slot = cp.type === 'reinstate' ? null : cp.slot;
  const locked = await lockModuleAndMap(trx, { moduleSerial: cp.moduleSerial, slot });
  const dbCheckpoint = locked.moduleRow?.checkpoint ?? null;
  if (cp.type !== 'reinstate') {
    const expected = dbCheckpoint ? digestOf(dbCheckpoint) : null;
    if (expected ? !cp.prevDigest.equals(expected) : !cp.prevDigest.equals(Buffer.alloc(32))) throw fail("the record does not chain to the module's checkpoint in the database");
    if (cp.mapEpoch !== locked.row.epoch + 1) throw fail(`the record carries map epoch ${cp.mapEpoch}, the database's map is at ${locked.row.epoch}`);
  } else if (cp.mapEpoch <= locked.row.epoch) throw fail(`the reinstatement's map epoch ${cp.mapEpoch} is not above the database's ${locked.row.epoch}`);
  const at = new Date(j.createdAt);

  if (cp.type === 'reinstate') {
    await setMapEpochNow(trx, MAP_SHARD, cp.mapEpoch);
  } else {
    if (!j.package) throw fail('the record carries no package (exported from a journal before packages were kept)');
    const sealed = Buffer.from(j.package, 'base64');
    const pkg = await openPackage(hsm, sealed, cp.meterId);
    const nodes = pathNodes(cp.slot, leafHash(cp.slot, cp.meterId, cp.packageDigest), locked.view.siblings);
    const root = nodes[nodes.length - 1].hash;
    if (!root.equals(cp.mapRoot)) throw fail('the meter map rebuilt with this record is not the root the record names');
    const master = cp.meterId === MASTER_PSD_ID;
    // the master PSD's reserved slot is not a meter's: the next free slot stays
    await storeMap(trx, { nodes, epoch: cp.mapEpoch, root, nextSlot: master ? locked.row.nextSlot : Math.max(locked.row.nextSlot, cp.slot + 1) });
    if (master) {
      // the pool row is the master PSD's package and its register copies
      const m = masterRegisters(pkg);
      await storeMasterPsd(trx, {
        package: sealed, record_counter: pkg.recordCounter, purchased: m.purchased, available: m.descendingRegister, refunds_paid: m.refundRegister, updated_at: at,
      });
      // a purchase's post reference is in its sealed details
      if (cp.type === 'pool-purchase') {
        const details = await openJournalPayload(hsm, checkpoint, Buffer.from(j.payload, 'base64'));
        await putBackPurchase(trx, { amount: cp.amount, reference: String(details.reference ?? ''), enteredBy: details.operator ?? 'journal replay', at });
      }
    }
    for (const a of entry.rows.accounts ?? []) await putBackAccount(trx, a);
    const meter = master ? null : {
      state: pkg.state, record_counter: pkg.recordCounter, package: sealed, cert_serial: pkg.indiciumCertSerial || null,
      key_expiry: pkg.indiciumKeyExpiry ? new Date(pkg.indiciumKeyExpiry) : null,
      ascending_register: pkg.ascendingRegister, descending_register: pkg.descendingRegister, updated_at: at,
      ...(entry.rows.accounts?.[0] ? { account_id: entry.rows.accounts[0].account_id } : {}),
    };
    const exists = meter && await meterExists(trx, cp.meterId);
    if (meter && exists) await updateMeterRow(trx, cp.meterId, meter);
    else if (meter) await insertMeterRow(trx, { meter_id: cp.meterId, slot: cp.slot, ...meter });
    // a revocation the restored database does not know is still owed to the licensing authority
    // (docs/licensing.md): queued again with the operator's reason from the sealed details
    if (cp.type === 'revoke-licence' && pkg.licenceId) {
      const details = await openJournalPayload(hsm, checkpoint, Buffer.from(j.payload, 'base64'));
      await insertRevocationReportOnce(trx, { meterId: cp.meterId, licenceId: pkg.licenceId, reason: String(details.reason ?? ''), revokedAt: at });
    }
  }
  if (!locked.moduleRow) await insertModuleRow(trx, cp.moduleSerial, '');
  await storeModuleCheckpoint(trx, cp.moduleSerial, { checkpoint, seq: cp.seq, type: cp.type, amount: cp.amount, at });
  await insertJournalRow(trx, {
    meter_id: j.meterId, module_serial: j.moduleSerial, checkpoint_seq: j.seq, tx_type: j.type, amount: j.amount,
    ascending_register: j.ascendingRegister, descending_register: j.descendingRegister, checkpoint,
    payload: Buffer.from(j.payload, 'base64'), module_mac: Buffer.from(j.moduleMac, 'base64'), created_at: at,
    sequence: j.sequence, receipt: j.receipt === null ? null : JSON.stringify(j.receipt), package: j.package ? Buffer.from(j.package, 'base64') : null,
  });
  // before the master PSD was sealed, the pool row moved with the meters' commands; since, only
  // the master PSD's own records move it (above)
  const unsealed = !(await poolPackage(trx))?.package;
  if (unsealed && cp.type === 'pvd') {
    const pool = await lockPoolAvailable(trx);
    if (Number(pool.available) < cp.amount) throw fail(`the restored pool holds ${pool.available} mills and the PVD took ${cp.amount}: stock bought from the post after the restore point is not in the export (give it with --stock REFERENCE=AMOUNT)`);
    await takeFromPool(trx, cp.amount);
  }
  for (const r of entry.rows.refunds ?? []) {
    if (unsealed) await refundIntoPool(trx, r.kind, Number(r.amount));
    await putBackRefund(trx, rowIn(r, ['created_at']));
  }
  for (const p of entry.rows.payments ?? []) {
    await putBackPayment(trx, rowIn(p, ['created_at', 'updated_at']));
  }
  for (const c of entry.rows.certificates ?? []) await putBackCertificate(trx, rowIn(c, ['not_before', 'not_after', 'created_at'], ['certificate_der']));
  for (const i of entry.rows.indicia ?? []) {
    if (refused.has(Number(i.indicium_id))) continue;
    // the print batch the row names is a request's answer the export does not carry
    await putBackIndicium(trx, { ...rowIn(i, ['created_at'], ['data', 'signature', 'encrypted_indicium']), batch_id: null, receipt: i.receipt === null || i.receipt === undefined ? null : JSON.stringify(i.receipt) });
  }
}

/** An exported row as the database takes it: the named times as Date, the named bytea columns from base64. */
function rowIn(r: Record<string, unknown>, times: string[], bytes: string[] = []): Record<string, unknown> {
  const out: Record<string, unknown> = { ...r };
  for (const t of times) if (typeof out[t] === 'string') out[t] = new Date(out[t] as string);
  for (const b of bytes) if (typeof out[b] === 'string') out[b] = Buffer.from(out[b] as string, 'base64');
  return out;
}

async function compareWithRing(db: Knex, serial: string, hsm: ModuleToken | undefined, replayed: number): Promise<ModuleAfterReplay> {
  const row = await moduleCheckpointAndSeq(db, serial);
  const databaseSeq = row?.checkpoint_seq === null || row?.checkpoint_seq === undefined ? null : Number(row.checkpoint_seq);
  const base = { moduleSerial: serial, replayed, databaseSeq, missing: [] as ModuleAfterReplay['missing'] };
  if (!hsm) return { ...base, ringSeq: null, state: 'not-configured' };
  const ring = new CheckpointRing(hsm, Number.MAX_SAFE_INTEGER);
  await ring.load();
  const newest = ring.newest();
  const ringSeq = newest?.checkpoint.seq ?? null;
  if (!newest || (row?.checkpoint && newest.bytes.equals(row.checkpoint))) return { ...base, ringSeq, state: 'in-step' };
  if (databaseSeq !== null && newest.checkpoint.seq < databaseSeq) return { ...base, ringSeq, state: 'database-ahead' };
  const missing = ring.list().filter((e) => databaseSeq === null || e.checkpoint.seq > databaseSeq).map((e) => ({
    seq: e.checkpoint.seq, meterId: e.checkpoint.meterId, type: e.checkpoint.type, amount: e.checkpoint.amount,
    ascendingRegister: e.checkpoint.ascendingRegister, descendingRegister: e.checkpoint.descendingRegister, at: new Date(e.checkpoint.time).toISOString(),
  }));
  return { ...base, ringSeq, state: 'ring-ahead', missing };
}
