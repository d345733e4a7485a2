import { X509Certificate, createVerify } from 'node:crypto';
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Knex } from 'knex';
import { HsmModule } from '../hsm/hsm-module';
import { canonicalJson } from '@vbi/core/protocol/canonical-json';
import { writeDurably } from '../db/durable-file';
import { identityCertificateOf } from '../db/repositories/modules';
import { anyJournalRecordBetween } from '../db/repositories/journal';
import { DailyActivity, dailyActivity } from './daily-report';
import { Reconciliation, reconcile } from './reconciliation';
import { ReportSource, databaseSource } from './report-source';

/**
 * A daily report file (docs/reports.md): `daily-YYYY-MM-DD.json`, the day's activity and — when
 * made from the database — its reconciliation, signed by a module's identity key (ECDSA/RSA over
 * SHA-256 of the canonical JSON of `report`), with that key's certificate so the post checks it
 * against the deployment's root.
 */
export interface SignedReport {
  report: { activity: DailyActivity; reconciliation: Reconciliation | null; source: ReportSource['name'] };
  signature: { moduleSerial: string; certificate: string | null; value: string };
}

export async function signReport(db: Knex, hsm: HsmModule, report: SignedReport['report']): Promise<SignedReport> {
  const row = await identityCertificateOf(db, hsm.serial);
  const value = await hsm.identitySign(Buffer.from(canonicalJson(report), 'utf8'));
  return { report, signature: { moduleSerial: hsm.serial, certificate: row?.identity_certificate ? row.identity_certificate.toString('base64') : null, value: value.toString('base64') } };
}

/** Whether the signature verifies with the certificate the file carries (the caller checks that certificate's chain). */
export function verifyReportSignature(doc: SignedReport): boolean {
  if (!doc?.signature?.certificate) return false;
  try {
    const key = new X509Certificate(Buffer.from(doc.signature.certificate, 'base64')).publicKey;
    return createVerify('sha256').update(canonicalJson(doc.report), 'utf8')
      .verify({ key, dsaEncoding: 'ieee-p1363' }, Buffer.from(doc.signature.value, 'base64'));
  } catch {
    return false;
  }
}

export const reportFileName = (date: string) => `daily-${date}.json`;

/** Builds, signs and writes one day's report (durably: packages/server/src/db/durable-file.ts); returns its path. */
export async function writeDailyReport(req: { db: Knex; hsm: HsmModule; date: string; dir: string; source?: ReportSource }): Promise<{ path: string; doc: SignedReport }> {
  const source = req.source ?? databaseSource(req.db);
  const activity = await dailyActivity(source, req.date);
  const reconciliation = source.name === 'database' ? await reconcile(req.db, req.date) : null;
  const doc = await signReport(req.db, req.hsm, { activity, reconciliation, source: source.name });
  await mkdir(req.dir, { recursive: true, mode: 0o700 });
  const name = source.name === 'database' ? reportFileName(req.date) : `daily-${req.date}.from-export.json`;
  await writeDurably(req.dir, name, JSON.stringify(doc, null, 2) + '\n');
  return { path: join(req.dir, name), doc };
}

/**
 * The service's schedule: the complete UTC days among the last `days` (yesterday back) that
 * have journal records and no report file yet get one. Returns the dates written.
 */
export async function writeMissingReports(req: { db: Knex; hsm: HsmModule; dir: string; now?: () => number; days?: number }): Promise<string[]> {
  const today = new Date((req.now ?? Date.now)()).toISOString().slice(0, 10);
  const have = new Set(await readdir(req.dir).catch(() => [] as string[]));
  const written: string[] = [];
  for (let back = 1; back <= (req.days ?? 7); back++) {
    const date = new Date(Date.parse(`${today}T00:00:00Z`) - back * 86_400_000).toISOString().slice(0, 10);
    if (have.has(reportFileName(date))) continue;
    const from = new Date(`${date}T00:00:00Z`);
    const any = await anyJournalRecordBetween(req.db, from, new Date(from.getTime() + 86_400_000));
    if (!any) continue;
    await writeDailyReport({ db: req.db, hsm: req.hsm, date, dir: req.dir });
    written.push(date);
  }
  return written;
}
