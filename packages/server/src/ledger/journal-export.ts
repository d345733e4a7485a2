// Over 300 lines: the export's writer and reader (exportJournal, readExport) stay together so that the format cannot drift between them.
import { X509Certificate, createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Knex } from 'knex';
import { vbiError } from '@vbi/core/errors';
import { macExportSeal, verifyExportSeal, type ModuleToken } from '../module/module-token';
import { Checkpoint, ZERO_DIGEST, decodeCheckpoint, digestOf } from '../module/checkpoint';
import { verifyJournalMac } from '../module/journal-seal';
import { assembleIndicium, decodeIndicium } from '@vbi/core/indicium/layout';
import { verifyIndiciumSignature } from '@vbi/core/indicium/signature';
import { writeDurably } from '../db/durable-file';
import type { AuditRecord } from '../module/audit';
import { accountRows, certificatesOfMeterBySerial, indiciaOfRecord, paymentsAppliedBy, refundsOfRecord } from '../db/repositories/record-rows';
import { journalModuleSerials, journalRowsAfter, type JournalDbRow } from '../db/repositories/journal';
import { meterAccountId } from '../db/repositories/meters';
import { chainedAuditRecords } from '../db/repositories/audit-log';

/**
 * The journal export (docs/journal-export.md): the journal written off the database to an
 * append-only set of files, for recovery when the database and its WAL archive's tail are lost
 * (WO 01/29778: the encrypted transaction log kept off-site).
 *
 * Each export run appends one segment: `segment-NNNNNN.jsonl`, one entry per line, each line
 * carrying the SHA-256 of the line before it (across segments), then `segment-NNNNNN.seal.json`,
 * whose module MAC binds the segment's last line hash, its entry numbers and the per-module
 * cursor. Files are written under a temporary name, fsynced and renamed; a segment without its
 * seal (a run that died) is not part of the export and the next run writes it again. Nothing
 * already sealed is ever rewritten.
 *
 * An entry holds one journal row as the database has it (checkpoint record, sealed payload,
 * module MAC, the sealed package after the command) and the non-secret rows the command wrote
 * that recovery puts back (indicia, refunds, payments, certificates, the account a meter was
 * assigned to). Nothing in it is in clear that is not in clear in the database.
 */
export const EXPORT_FORMAT = 'vbi-journal-export/1';
const SEAL_DOMAIN = Buffer.from('VBIX', 'ascii');

export interface ExportedJournalRow {
  meterId: string;
  moduleSerial: string;
  seq: number;
  type: string;
  amount: number;
  ascendingRegister: number;
  descendingRegister: number;
  checkpoint: string;
  payload: string;
  moduleMac: string;
  createdAt: string;
  sequence: number | null;
  receipt: unknown;
  /** The sealed package after the command (base64); null on reinstatement records. */
  package: string | null;
}

/** Rows keyed by table, each row's columns as the database returns them (bytea as base64, times as ISO). */
export type ExportedRows = Record<string, Array<Record<string, unknown>>>;

export interface ExportEntry {
  n: number;
  prev: string;
  journal: ExportedJournalRow;
  rows: ExportedRows;
}

/** A module's signed audit record (packages/server/src/module/audit-chain.ts) as the export carries it, in the same line chain. */
export interface ExportAuditLine {
  n: number;
  prev: string;
  audit: AuditRecord;
}

export interface ExportSeal {
  format: string;
  segment: number;
  firstN: number;
  lastN: number;
  lastHash: string;
  /** Per module, the newest sequence number exported so far (this segment included). */
  cursor: Record<string, number>;
  /** Per module, the newest audit record sequence number exported so far; absent in seals written before audit records were exported. */
  auditCursor?: Record<string, number>;
  sealedAt: string;
  sealedBy: string;
  mac: string;
}

const segmentName = (k: number) => `segment-${String(k).padStart(6, '0')}.jsonl`;
const sealName = (k: number) => `segment-${String(k).padStart(6, '0')}.seal.json`;
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest();

function sealMacInput(s: Omit<ExportSeal, 'mac'>): Buffer {
  const fields: unknown[] = [s.format, s.segment, s.firstN, s.lastN, s.lastHash, Object.entries(s.cursor).sort(), s.sealedAt, s.sealedBy];
  if (s.auditCursor) fields.push(Object.entries(s.auditCursor).sort());
  const body = JSON.stringify(fields);
  return Buffer.concat([SEAL_DOMAIN, sha256(body)]);
}

/**
 * What reading an export found. `indicium`: one exported indicium row is not what its meter
 * signed (an insider edited the database before the export ran); such a row is left out of a
 * replay and listed, while every other finding makes the whole export unusable.
 */
export interface ExportFinding { segment?: number; n?: number; moduleSerial?: string; seq?: number; reason: string; indicium?: number }

/** Whether the findings leave the export usable (only indicium rows to leave out). */
export const usable = (findings: ExportFinding[]) => findings.every((f) => f.indicium !== undefined);

export interface ReadExport {
  entries: ExportEntry[];
  /** The modules' audit records the export carries, in export order (each module's in sequence order). */
  audit: AuditRecord[];
  seals: ExportSeal[];
  /** Decoded checkpoint records, by entry number. */
  records: Map<number, Checkpoint>;
  findings: ExportFinding[];
}

/**
 * Reads and verifies an export with a module holding the deployment's MAC key: every seal's
 * MAC, the segments' entry numbers and line hash chain from the first line, each entry's
 * checkpoint MAC, module MAC and package digest, each module's record chain (prevDigest), the
 * cursor, that a print record's indicium rows add up to its amount, and that each of those rows
 * is what its meter signed (signature under the certificate it names, taken from the export's
 * certify and renewal records; meter and postage as the row says). Findings, not exceptions: the
 * caller decides (verify lists them, export and replay refuse).
 */
export async function readExport(hsm: ModuleToken, dir: string): Promise<ReadExport> {
  const findings: ExportFinding[] = [];
  const entries: ExportEntry[] = [];
  const audit: AuditRecord[] = [];
  const seals: ExportSeal[] = [];
  const records = new Map<number, Checkpoint>();
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return { entries, audit, seals, records, findings };
  }
  const auditCursor: Record<string, number> = {};
  const sealed = names.map((f) => /^segment-(\d{6})\.seal\.json$/.exec(f)).filter((m) => m).map((m) => Number(m![1])).sort((a, b) => a - b);
  let prevHash = ZERO_DIGEST.toString('hex');
  let n = 0;
  const cursor: Record<string, number> = {};
  const lastOf = new Map<string, Buffer>();
  /** Certificates (DER) by serial, as the export's certify and renewal records carry them. */
  const certificates = new Map<string, Buffer>();
  for (let i = 0; i < sealed.length; i++) {
    const k = sealed[i];
    if (k !== i + 1) {
      findings.push({ segment: i + 1, reason: `segment ${i + 1} is missing (or its seal is)` });
      break;
    }
    let seal: ExportSeal;
    let lines: string[];
    try {
      seal = JSON.parse(await readFile(join(dir, sealName(k)), 'utf8')) as ExportSeal;
      lines = (await readFile(join(dir, segmentName(k)), 'utf8')).split('\n').filter((l) => l.length > 0);
    } catch (e) {
      findings.push({ segment: k, reason: `segment ${k} cannot be read: ${(e as Error).message}` });
      break;
    }
    const { mac, ...body } = seal;
    if (seal.format !== EXPORT_FORMAT || seal.segment !== k || typeof mac !== 'string' ||
        !(await verifyExportSeal(hsm, sealMacInput(body), Buffer.from(mac, 'base64')).catch(() => false))) {
      findings.push({ segment: k, reason: `the seal of segment ${k} does not verify (edited, or not made by a module of this deployment)` });
      break;
    }
    seals.push(seal);
    if (seal.firstN !== n + 1 || seal.lastN !== n + lines.length) findings.push({ segment: k, reason: `segment ${k} should hold entries ${seal.firstN}..${seal.lastN} and holds ${lines.length} lines after entry ${n}` });
    for (const line of lines) {
      n++;
      let e: ExportEntry | ExportAuditLine;
      try {
        e = JSON.parse(line) as ExportEntry | ExportAuditLine;
      } catch {
        findings.push({ segment: k, n, reason: 'a line is not JSON' });
        prevHash = sha256(line).toString('hex');
        continue;
      }
      if (e.n !== n) findings.push({ segment: k, n, reason: `entry ${e.n} where entry ${n} belongs (reordered, removed or added)` });
      if (e.prev !== prevHash) findings.push({ segment: k, n, reason: 'the line hash chain is broken before this entry (a line edited, removed or reordered)' });
      prevHash = sha256(line).toString('hex');
      if (e !== null && typeof e === 'object' && 'audit' in e) {
        // authenticated by the line chain and the seal; the record's own signature and links are
        // checked by `npm run audit -- verify` once it is back in the database
        const r = e.audit;
        const serial = typeof r?.moduleSerial === 'string' ? r.moduleSerial : '?';
        if (!Number.isSafeInteger(r?.seq) || r.seq <= (auditCursor[serial] ?? 0)) {
          findings.push({ segment: k, n, moduleSerial: serial, reason: `audit record ${String(r?.seq)} of module ${serial} is out of order or numbered wrongly` });
        } else auditCursor[serial] = r.seq;
        audit.push(r);
        continue;
      }
      entries.push(e);
      const j = e.journal;
      const at = { segment: k, n, moduleSerial: j.moduleSerial, seq: j.seq };
      const checkpoint = Buffer.from(j.checkpoint, 'base64');
      let cp: Checkpoint;
      try {
        cp = await decodeCheckpoint(hsm, checkpoint);
      } catch (err) {
        findings.push({ ...at, reason: `checkpoint: ${(err as Error).message}` });
        continue;
      }
      if (!(await verifyJournalMac(hsm, checkpoint, Buffer.from(j.payload, 'base64'), Buffer.from(j.moduleMac, 'base64')))) {
        findings.push({ ...at, reason: 'module MAC does not verify' });
        continue;
      }
      if (cp.moduleSerial !== j.moduleSerial || cp.seq !== j.seq || cp.meterId !== j.meterId || cp.type !== j.type || cp.amount !== j.amount ||
          cp.ascendingRegister !== j.ascendingRegister || cp.descendingRegister !== j.descendingRegister) {
        findings.push({ ...at, reason: 'the entry differs from its checkpoint record' });
        continue;
      }
      if (j.package !== null && !digestOf(Buffer.from(j.package, 'base64')).equals(cp.packageDigest)) {
        findings.push({ ...at, reason: 'the package is not the one its checkpoint record names' });
        continue;
      }
      const before = lastOf.get(cp.moduleSerial);
      if (before && cp.type !== 'reinstate' && !cp.prevDigest.equals(digestOf(before))) {
        findings.push({ ...at, reason: "the module's record chain is broken before this entry" });
      }
      for (const c of e.rows.certificates ?? []) certificates.set(String(c.serial_hex), Buffer.from(String(c.certificate_der), 'base64'));
      if ((cp.type === 'indicium' || cp.type === 'correction')) {
        const total = (e.rows.indicia ?? []).reduce((s, r) => s + Number(r.postage), 0);
        if (total !== cp.amount) findings.push({ ...at, reason: `the print record's indicium rows add up to ${total} mills, the record to ${cp.amount}` });
        // each indicium row is what its meter's key signed, for this meter and postage
        for (const r of e.rows.indicia ?? []) {
          const why = indiciumProblem(r, certificates);
          if (why) findings.push({ ...at, reason: `indicium row ${String(r.indicium_id)}: ${why}`, indicium: Number(r.indicium_id) });
        }
      }
      lastOf.set(cp.moduleSerial, checkpoint);
      cursor[cp.moduleSerial] = Math.max(cursor[cp.moduleSerial] ?? 0, cp.seq);
      records.set(n, cp);
    }
    if (prevHash !== seal.lastHash) findings.push({ segment: k, reason: `segment ${k} does not end with the line its seal names (lines removed or added)` });
    if (JSON.stringify(Object.entries(seal.cursor).sort()) !== JSON.stringify(Object.entries(cursor).sort())) {
      findings.push({ segment: k, reason: `the seal's cursor is not what segments 1..${k} hold` });
    }
    if (JSON.stringify(Object.entries(seal.auditCursor ?? {}).sort()) !== JSON.stringify(Object.entries(auditCursor).sort())) {
      findings.push({ segment: k, reason: `the seal's audit cursor is not what segments 1..${k} hold` });
    }
  }
  return { entries, audit, seals, records, findings };
}

/**
 * Why an exported indicium row is not what its meter signed, or undefined: its signature under
 * the certificate it names (from the export), its meter and its postage.
 */
function indiciumProblem(r: Record<string, unknown>, certificates: Map<string, Buffer>): string | undefined {
  try {
    const decoded = decodeIndicium(assembleIndicium(Buffer.from(String(r.data), 'base64'), Buffer.from(String(r.signature), 'base64')));
    const f = decoded.fields;
    if (f.meterId !== r.meter_id || f.postage !== Number(r.postage)) return 'its fields differ from the row (meter or postage)';
    const der = certificates.get(f.certSerial);
    if (!der) return `no certificate ${f.certSerial} in the export`;
    const publicKey = new X509Certificate(der).publicKey;
    if (!verifyIndiciumSignature({ algorithm: f.algorithm, publicKey, data: decoded.data, signature: decoded.signature })) return 'its signature does not verify';
    return undefined;
  } catch (e) {
    return `does not decode: ${(e as Error).message}`;
  }
}

const b64 = (v: unknown) => (Buffer.isBuffer(v) ? v.toString('base64') : v);

/** A database row as export JSON: bytea as base64, times as ISO strings. */
function plain(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) out[k] = v instanceof Date ? v.toISOString() : b64(v);
  return out;
}

/** The non-secret rows a command wrote beside its journal row, as recovery puts them back. */
async function rowsOf(db: Knex, r: JournalDbRow): Promise<ExportedRows> {
  const key = { module_serial: r.module_serial, checkpoint_seq: r.checkpoint_seq };
  const rows: ExportedRows = {};
  const put = (table: string, list: Array<Record<string, unknown>>) => {
    if (list.length > 0) rows[table] = list.map(plain);
  };
  switch (r.tx_type) {
    case 'indicium':
    case 'correction':
      put('indicia', await indiciaOfRecord(db, key));
      break;
    case 'refund':
      put('refunds', await refundsOfRecord(db, key));
      break;
    case 'pvd':
      // a payment names the meter and the sequence number of the record that applied it
      put('payments', await paymentsAppliedBy(db, { meterId: r.meter_id, seq: r.checkpoint_seq, amount: r.amount }));
      break;
    case 'meter-certify':
    case 'key-renewal':
      put('certificates', await certificatesOfMeterBySerial(db, r.meter_id));
      break;
    case 'meter-assign': {
      const m = await meterAccountId(db, r.meter_id);
      if (m?.account_id !== null && m?.account_id !== undefined) put('accounts', await accountRows(db, m.account_id));
      break;
    }
    default:
  }
  return rows;
}

/**
 * Appends every journal row not yet exported (per module, sequence numbers above the cursor, in
 * sequence order; across modules in meter map order) as one new sealed segment. Verifies the
 * export it appends to first: a broken export is JOURNAL_EXPORT_BROKEN and nothing is written.
 */
export async function exportJournal(req: { db: Knex; hsm: ModuleToken; dir: string; now?: () => Date }): Promise<{ segment: number | null; entries: number; total: number; audit: number }> {
  await mkdir(req.dir, { recursive: true, mode: 0o700 });
  const existing = await readExport(req.hsm, req.dir);
  if (!usable(existing.findings)) {
    throw vbiError('JOURNAL_EXPORT_BROKEN', `the export in ${req.dir} does not verify: ${existing.findings[0].reason}`, { findings: existing.findings });
  }
  // a segment left without its seal by a run that died is not part of the export
  const k = existing.seals.length + 1;
  for (const f of await readdir(req.dir)) {
    if (f === segmentName(k) || f.startsWith('.segment-')) await rm(join(req.dir, f), { force: true });
  }
  const last = existing.seals[existing.seals.length - 1];
  const cursor: Record<string, number> = { ...(last?.cursor ?? {}) };
  const serials = (await journalModuleSerials(req.db)).sort();
  const fresh: Array<{ row: JournalDbRow; epoch: number }> = [];
  for (const serial of serials) {
    const rows = await journalRowsAfter(req.db, serial, cursor[serial] ?? 0);
    for (const row of rows) fresh.push({ row, epoch: (await decodeCheckpoint(req.hsm, row.checkpoint)).mapEpoch });
  }
  // the modules' signed audit records after the audit cursor, each module's in sequence order
  const auditCursor: Record<string, number> = { ...(last?.auditCursor ?? {}) };
  const auditRows = await chainedAuditRecords<AuditRecord>(req.db);
  const freshAudit = auditRows.filter((r) => Number(r.seq) > (auditCursor[r.module_serial] ?? 0));
  const total = existing.entries.length;
  if (fresh.length === 0 && freshAudit.length === 0) return { segment: null, entries: 0, total, audit: 0 };
  fresh.sort((x, y) => x.epoch - y.epoch);
  let prev = last?.lastHash ?? ZERO_DIGEST.toString('hex');
  let n = existing.entries.length + existing.audit.length;
  const lines: string[] = [];
  for (const { row } of fresh) {
    const entry: ExportEntry = {
      n: ++n,
      prev,
      journal: {
        meterId: row.meter_id, moduleSerial: row.module_serial, seq: Number(row.checkpoint_seq), type: row.tx_type, amount: Number(row.amount),
        ascendingRegister: Number(row.ascending_register), descendingRegister: Number(row.descending_register),
        checkpoint: row.checkpoint.toString('base64'), payload: row.payload.toString('base64'), moduleMac: row.module_mac.toString('base64'),
        createdAt: row.created_at.toISOString(), sequence: row.sequence === null ? null : Number(row.sequence), receipt: row.receipt ?? null,
        package: row.package ? row.package.toString('base64') : null,
      },
      rows: await rowsOf(req.db, row),
    };
    const line = JSON.stringify(entry);
    lines.push(line);
    prev = sha256(line).toString('hex');
    cursor[row.module_serial] = Math.max(cursor[row.module_serial] ?? 0, Number(row.checkpoint_seq));
  }
  for (const a of freshAudit) {
    const line = JSON.stringify({ n: ++n, prev, audit: a.record } satisfies ExportAuditLine);
    lines.push(line);
    prev = sha256(line).toString('hex');
    auditCursor[a.module_serial] = Number(a.seq);
  }
  const firstN = existing.entries.length + existing.audit.length + 1;
  const body: Omit<ExportSeal, 'mac'> = {
    format: EXPORT_FORMAT, segment: k, firstN, lastN: n, lastHash: prev, cursor,
    sealedAt: (req.now?.() ?? new Date()).toISOString(), sealedBy: req.hsm.serial, auditCursor,
  };
  const seal: ExportSeal = { ...body, mac: (await macExportSeal(req.hsm, sealMacInput(body))).toString('base64') };
  await writeDurably(req.dir, segmentName(k), lines.join('\n') + '\n');
  await writeDurably(req.dir, sealName(k), JSON.stringify(seal, null, 2) + '\n');
  return { segment: k, entries: fresh.length, total: total + fresh.length, audit: freshAudit.length };
}
