import type { Knex } from 'knex';
import type { ModuleToken } from '../module/module-token';
import { Checkpoint, ZERO_DIGEST, decodeCheckpoint, digestOf } from '../module/checkpoint';
import { buildMap, leafHash } from '../module/meter-map';
import { MASTER_PSD_ID, MASTER_PSD_SLOT } from '../module/commands/master-psd';
import { verifyJournalMac } from '../module/journal-seal';
import { readMapRow } from './pg-meter-map';
import { indiciaWithRecords, journalInModuleOrder } from '../db/repositories/journal';
import { moduleCheckpoint } from '../db/repositories/modules';
import { meterSlots } from '../db/repositories/meters';
import { poolPackage } from '../db/repositories/pool';

export type FindingKind = 'edited' | 'inserted' | 'deleted' | 'reordered' | 'map' | 'indicium';

export interface Finding {
  kind: FindingKind;
  journalId?: number;
  moduleSerial?: string;
  seq?: number;
  meterId?: string;
  reason: string;
}

export interface JournalReport {
  ok: boolean;
  rowsChecked: number;
  modules: number;
  /** The first row (per module, in sequence order) that does not verify. */
  firstBroken?: { journalId: number; moduleSerial: string; seq: number; reason: string };
  /** Everything found, classified: rows edited, inserted, deleted or reordered; map and indicium mismatches. */
  findings: Finding[];
}

interface Row {
  journal_id: number; meter_id: string; module_serial: string; checkpoint_seq: number; tx_type: string;
  amount: number; ascending_register: number; descending_register: number; checkpoint: Buffer; payload: Buffer; module_mac: Buffer;
}

const PRINT_TYPES = new Set(['indicium', 'correction']);

/**
 * Verifies the journal end to end with a module holding the deployment's MAC key:
 *  - each row: checkpoint MAC, module MAC, columns = what its checkpoint says (else `edited`);
 *  - each module's rows: in journal order their sequence numbers rise (else `reordered`), no
 *    record twice (`inserted`), an unbroken hash chain from the first record (gaps: `deleted`),
 *    and the module table's checkpoint is the chain's last record;
 *  - over all modules: map epochs 1, 2, 3 ... without a gap or a repeat (reinstatements jump),
 *    the last one is the database's map row; the meter map rebuilt from each meter's newest record
 *    has the root of that record and of the map row, and each meter row holds the package and
 *    slot its newest record names (`map`);
 *  - each indicium row belongs to one journal print record, each print record has its rows and
 *    their postage adds up to its amount (`indicium`).
 */
export async function verifyJournal(req: { db: Knex; hsm: ModuleToken }): Promise<JournalReport> {
  const findings: Finding[] = [];
  let firstBroken: JournalReport['firstBroken'];
  const found = (f: Finding) => {
    findings.push(f);
    if (!firstBroken && f.journalId !== undefined) {
      firstBroken = { journalId: f.journalId, moduleSerial: f.moduleSerial ?? '', seq: f.seq ?? 0, reason: f.reason };
    }
  };
  const rows: Row[] = await journalInModuleOrder(req.db);
  const serials = [...new Set(rows.map((r) => r.module_serial))].sort();
  const decoded = new Map<number, Checkpoint>();
  let rowsChecked = 0;

  for (const serial of serials) {
    const mine = rows.filter((r) => r.module_serial === serial);
    // journal order (ids are handed out at insert) against sequence order
    const byId = [...mine].sort((x, y) => x.journal_id - y.journal_id);
    for (let i = 1; i < byId.length; i++) {
      if (byId[i].checkpoint_seq < byId[i - 1].checkpoint_seq) {
        found({ kind: 'reordered', journalId: byId[i].journal_id, moduleSerial: serial, seq: byId[i].checkpoint_seq, meterId: byId[i].meter_id,
          reason: `sequence ${byId[i].checkpoint_seq} comes after ${byId[i - 1].checkpoint_seq} in journal order` });
      }
    }
    let prev: { checkpoint: Buffer; seq: number } | null = null;
    const seen = new Map<string, number>();
    for (const r of mine) {
      const at = { journalId: r.journal_id, moduleSerial: serial, seq: r.checkpoint_seq, meterId: r.meter_id };
      const hex = r.checkpoint.toString('hex');
      const dup = seen.get(hex);
      if (dup !== undefined) {
        found({ ...at, kind: 'inserted', reason: `a copy of journal row ${dup} (the same checkpoint record twice)` });
        continue;
      }
      seen.set(hex, r.journal_id);
      let cp: Checkpoint;
      try {
        cp = await decodeCheckpoint(req.hsm, r.checkpoint);
      } catch (e) {
        found({ ...at, kind: 'edited', reason: `checkpoint: ${(e as Error).message}` });
        continue;
      }
      if (!(await verifyJournalMac(req.hsm, r.checkpoint, r.payload, r.module_mac))) {
        found({ ...at, kind: 'edited', reason: 'module MAC does not verify' });
        continue;
      }
      if (cp.moduleSerial !== serial || cp.seq !== r.checkpoint_seq || cp.meterId !== r.meter_id || cp.type !== r.tx_type ||
          cp.amount !== r.amount || cp.ascendingRegister !== r.ascending_register || cp.descendingRegister !== r.descending_register) {
        found({ ...at, kind: 'edited', reason: 'row columns differ from its checkpoint record' });
        continue;
      }
      if (prev && cp.seq === prev.seq) {
        found({ ...at, kind: 'inserted', reason: `a second record with sequence ${cp.seq}` });
        continue;
      }
      const expectedPrev = prev ? digestOf(prev.checkpoint) : ZERO_DIGEST;
      if (!cp.prevDigest.equals(expectedPrev) && !(cp.type === 'reinstate')) {
        found({ ...at, kind: 'deleted', reason: prev
          ? `hash chain broken: a row before it is missing or was changed (after sequence ${prev.seq})`
          : "hash chain broken: the module's first journal row does not start its chain (rows missing before it)" });
      }
      decoded.set(r.journal_id, cp);
      prev = { checkpoint: r.checkpoint, seq: cp.seq };
      rowsChecked++;
    }
    const mod = await moduleCheckpoint(req.db, serial);
    if (prev && (!mod?.checkpoint || !(mod.checkpoint as Buffer).equals(prev.checkpoint))) {
      const last = mine[mine.length - 1];
      found({ kind: 'deleted', journalId: last.journal_id, moduleSerial: serial, seq: last.checkpoint_seq,
        reason: "module table checkpoint is not the chain's last record (rows missing after it?)" });
    }
  }

  await checkMap(req.db, rows, decoded, found);
  await checkIndicia(req.db, rows, decoded, found);
  return { ok: findings.length === 0, rowsChecked, modules: serials.length, firstBroken, findings };
}

/** Map epochs, the rebuilt meter map, and the meter rows against each meter's newest record. */
async function checkMap(db: Knex, rows: Row[], decoded: Map<number, Checkpoint>, found: (f: Finding) => void): Promise<void> {
  const records = rows.filter((r) => decoded.has(r.journal_id)).map((r) => ({ row: r, cp: decoded.get(r.journal_id) as Checkpoint }))
    .sort((x, y) => x.cp.mapEpoch - y.cp.mapEpoch);
  let epoch = 0;
  for (const { row, cp } of records) {
    const at = { journalId: row.journal_id, moduleSerial: cp.moduleSerial, seq: cp.seq, meterId: cp.meterId };
    if (cp.mapEpoch === epoch) found({ ...at, kind: 'inserted', reason: `map epoch ${cp.mapEpoch} appears twice` });
    else if (cp.mapEpoch !== epoch + 1 && cp.type !== 'reinstate') found({ ...at, kind: 'deleted', reason: `map epochs ${epoch + 1}..${cp.mapEpoch - 1} are missing before it` });
    epoch = cp.mapEpoch;
  }
  const mapRow = await readMapRow(db);
  if (!mapRow) {
    found({ kind: 'map', reason: 'the meter map row is missing' });
    return;
  }
  if (mapRow.epoch !== epoch) found({ kind: mapRow.epoch > epoch ? 'deleted' : 'map', reason: `the map row is at epoch ${mapRow.epoch}, the journal's newest record at ${epoch}` });

  // the newest record of each meter's slot is its current leaf
  const newest = new Map<string, Checkpoint>();
  for (const { cp } of records) if (cp.type !== 'reinstate') newest.set(`${cp.slot}`, cp);
  const leaves = new Map<number, Buffer>();
  for (const cp of newest.values()) leaves.set(cp.slot, leafHash(cp.slot, cp.meterId, cp.packageDigest));
  const rebuilt = buildMap(leaves).root;
  const last = records[records.length - 1]?.cp;
  if (last && !last.mapRoot.equals(rebuilt)) found({ kind: 'map', reason: "the map rebuilt from the journal is not the root of the journal's newest record" });
  if (!mapRow.root.equals(rebuilt)) found({ kind: 'map', reason: "the map row's root is not the map rebuilt from the journal" });

  const meters = await meterSlots(db);
  const bySlot = new Map([...newest.values()].map((cp) => [cp.slot, cp]));
  for (const m of meters) {
    const cp = m.slot === null ? undefined : bySlot.get(m.slot);
    if (!cp || cp.meterId !== m.meter_id) found({ kind: 'map', meterId: m.meter_id, reason: `meter row's slot ${m.slot} is not the meter's slot in the journal` });
    else if (!cp.packageDigest.equals(digestOf(m.package))) found({ kind: 'map', meterId: m.meter_id, reason: "meter row's package is not the one its newest journal record names" });
  }
  // the master PSD (the pool row): its package is the one its newest record at the reserved slot names
  const pool = await poolPackage(db);
  const master = bySlot.get(MASTER_PSD_SLOT);
  if (master && master.meterId !== MASTER_PSD_ID) found({ kind: 'map', meterId: master.meterId, reason: `a record of ${master.meterId} at the master PSD's slot ${MASTER_PSD_SLOT}` });
  else if (master && !pool?.package) found({ kind: 'map', meterId: MASTER_PSD_ID, reason: 'the journal holds master PSD records but the pool row holds no sealed package (deleted?)' });
  else if (master && !master.packageDigest.equals(digestOf(pool!.package!))) found({ kind: 'map', meterId: MASTER_PSD_ID, reason: "the pool row's package is not the one the master PSD's newest journal record names" });
  else if (!master && pool?.package) found({ kind: 'map', meterId: MASTER_PSD_ID, reason: 'the pool row holds a sealed package no journal record names' });
}

/**
 * Each indicium row names one journal print record (module, sequence, meter); each print record
 * has at least one row (a print request signs all its items in one record), and its rows' postage
 * adds up to the record's amount.
 */
async function checkIndicia(db: Knex, rows: Row[], decoded: Map<number, Checkpoint>, found: (f: Finding) => void): Promise<void> {
  const prints = new Map<string, Row>();
  for (const r of rows) if (decoded.has(r.journal_id) && PRINT_TYPES.has(r.tx_type)) prints.set(`${r.module_serial}#${r.checkpoint_seq}`, r);
  const indicia = await indiciaWithRecords(db);
  const postage = new Map<string, number>();
  for (const i of indicia) {
    const key = `${i.module_serial}#${i.checkpoint_seq}`;
    const r = prints.get(key);
    if (!r || r.meter_id !== i.meter_id) {
      found({ kind: 'indicium', meterId: i.meter_id, reason: `indicium row ${i.indicium_id} belongs to no journal print record` });
      continue;
    }
    postage.set(key, (postage.get(key) ?? 0) + Number(i.postage));
  }
  for (const [key, r] of prints) {
    const total = postage.get(key);
    if (total === undefined) found({ kind: 'indicium', journalId: r.journal_id, moduleSerial: r.module_serial, seq: r.checkpoint_seq, meterId: r.meter_id, reason: 'journal print record without its indicium rows (deleted?)' });
    else if (total !== Number(r.amount)) found({ kind: 'indicium', journalId: r.journal_id, moduleSerial: r.module_serial, seq: r.checkpoint_seq, meterId: r.meter_id, reason: `the print record's indicium rows add up to ${total} mills, the record to ${r.amount} (a row inserted or deleted?)` });
  }
}
