import type { Knex } from 'knex';
import { AuditRecord, verifyAuditSignature } from '../module/audit';
import { ChainHead, GENESIS_HASH, auditHash } from '../module/audit-chain';
import { auditLogRows } from '../db/repositories/audit-log';

/**
 * `npm run audit -- verify`: every stored audit record against its module's identity key, its
 * chain and the head the module's token holds (packages/server/src/module/audit-chain.ts). Finds records edited
 * (signature, or the next record's link), deleted (a gap, or the end behind the head), inserted
 * or duplicated, reordered (numbers out of storage order), edited columns, records beyond the
 * head, and the breaks the service itself recorded.
 */
export type AuditFindingKind =
  | 'unchained' | 'bad-signature' | 'column-mismatch' | 'gap' | 'reordered' | 'broken-link'
  | 'behind-head' | 'beyond-head' | 'head-mismatch' | 'no-head' | 'unknown-module' | 'break-recorded';

export interface AuditFinding {
  kind: AuditFindingKind;
  moduleSerial: string;
  seq?: number;
  auditId?: number;
  reason: string;
}

export interface AuditModuleKey {
  serial: string;
  /** The module identity key (SubjectPublicKeyInfo DER). */
  identitySpki: Buffer;
  /** The head its token holds (readAuditHead). */
  head: ChainHead | null;
}

export interface AuditVerifyReport {
  ok: boolean;
  findings: AuditFinding[];
  modules: Array<{ serial: string; records: number; lastSeq: number | null; headSeq: number | null }>;
}

interface Row { audit_id: number; kind: string; module_serial: string; at: Date; seq: number | null; record: AuditRecord }

export async function verifyAuditLog(db: Knex, keys: AuditModuleKey[]): Promise<AuditVerifyReport> {
  const rows = (await auditLogRows(db)) as Row[];
  const findings: AuditFinding[] = [];
  const byModule = new Map<string, Row[]>();
  for (const row of rows) {
    const r = row.record;
    const serial = typeof r?.moduleSerial === 'string' ? r.moduleSerial : row.module_serial;
    const at = { moduleSerial: serial, auditId: Number(row.audit_id), seq: row.seq ?? undefined };
    if (row.seq === null || row.seq === undefined) {
      findings.push({ ...at, kind: 'unchained', reason: 'record without a sequence number (written before the chain, or inserted)' });
      continue;
    }
    const columns = row.kind === r.kind && row.module_serial === r.moduleSerial && Number(row.seq) === r.seq
      && new Date(row.at).getTime() === new Date(r.at).getTime();
    if (!columns) findings.push({ ...at, kind: 'column-mismatch', reason: 'the columns differ from the signed record (kind, module, time or number edited)' });
    if (!byModule.has(serial)) byModule.set(serial, []);
    byModule.get(serial)!.push(row);
  }

  const report: AuditVerifyReport['modules'] = [];
  const serials = new Set([...byModule.keys(), ...keys.map((k) => k.serial)]);
  for (const serial of serials) {
    const list = byModule.get(serial) ?? [];
    const key = keys.find((k) => k.serial === serial);
    if (!key) {
      findings.push({ kind: 'unknown-module', moduleSerial: serial, reason: `${list.length} record(s) of a module that is not configured here: not verified` });
      continue;
    }
    let prev: AuditRecord | null = null;
    for (const row of list) {
      const r = row.record;
      const at = { moduleSerial: serial, auditId: Number(row.audit_id), seq: r.seq };
      if (!verifyAuditSignature(r, key.identitySpki)) {
        findings.push({ ...at, kind: 'bad-signature', reason: 'the signature does not verify under the module identity key (edited or forged)' });
      }
      const expected = (prev?.seq ?? 0) + 1;
      if (r.seq < expected) {
        findings.push({ ...at, kind: 'reordered', reason: `record ${r.seq} stored after record ${prev?.seq} (moved, or a copy inserted)` });
      } else if (r.seq > expected) {
        findings.push({ ...at, kind: 'gap', reason: `records ${expected}..${r.seq - 1} are missing` });
      } else if (r.prevHash !== (prev ? auditHash(prev) : GENESIS_HASH)) {
        findings.push({ ...at, kind: 'broken-link', reason: `record ${r.seq} does not name record ${expected - 1} as stored (that one was edited or replaced)` });
      }
      if (r.kind === 'audit-chain-broken') {
        findings.push({ ...at, kind: 'break-recorded', reason: `the service found the chain broken: ${r.reason}` });
      }
      if (!prev || r.seq > prev.seq) prev = r;
    }
    const last = prev;
    const head = key.head;
    if (!head) {
      if (last) findings.push({ kind: 'no-head', moduleSerial: serial, reason: `the token holds no audit head, the log holds records up to ${last.seq}` });
    } else if (!last || last.seq < head.seq) {
      findings.push({ kind: 'behind-head', moduleSerial: serial, seq: last?.seq, reason: `the log ends at record ${last?.seq ?? 0}, the token's head is record ${head.seq} (records deleted from the end, or an older copy)` });
    } else if (last.seq === head.seq + 1 && list.some((x) => x.record.seq === head.seq && auditHash(x.record) === head.hash)
      && last.prevHash === head.hash && verifyAuditSignature(last, key.identitySpki)) {
      // stored, and the process stopped before it moved the token's head: the next start moves it
    } else if (last.seq > head.seq) {
      findings.push({ kind: 'beyond-head', moduleSerial: serial, seq: last.seq, reason: `the log holds records beyond the token's head ${head.seq}` });
    } else if (auditHash(last) !== head.hash) {
      findings.push({ kind: 'head-mismatch', moduleSerial: serial, seq: last.seq, reason: `record ${last.seq} is not the one the token's head names` });
    }
    report.push({ serial, records: list.length, lastSeq: last?.seq ?? null, headSeq: head?.seq ?? null });
  }
  return { ok: findings.length === 0, findings, modules: report };
}
