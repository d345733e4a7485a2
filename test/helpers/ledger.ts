import type { Knex } from 'knex';
import { cloneSharedKeys, generateModuleKeys } from '@vbi/server/hsm/key-ceremony';
import { createService, Service } from '@vbi/server/service';
import { Config } from '@vbi/server/config/config';
import { auditRecords } from '@vbi/server/ledger/audit-store';
import { AuditRecord } from '@vbi/server/module/audit';
import { defaultWalArchive } from '@vbi/server/db/wal-archive';
import { DEFAULT_SUSPENSION_POLICY } from '@vbi/server/indicium/fraud-report';
import { join } from 'node:path';
import { LedgerOptions } from '@vbi/server/ledger/ledger';
import { Database } from '@vbi/server/db/database';
import { TEST_SO_PIN, TEST_USER_PIN, hsmConfig, provisionToken, testLibrary, uniqueLabel } from './hsm';
import { freshDatabase } from './db';
import { testPki } from './pki';
import { PgMeterStore } from '@vbi/server/ledger/pg-meter-store';
import { MeterGen } from '@vbi/server/pki/metergen';
import { Mailpiece } from '@vbi/server/module/commands/create-indicium';
import { randomBytes } from 'node:crypto';
import { CryptoModuleOptions } from '@vbi/server/hsm/crypto-module';

/** Two (or more) module tokens sharing package keys, as `ceremony clone` leaves them. */
export async function provisionModules(count: number, prefix = 'mod'): Promise<string[]> {
  const labels = Array.from({ length: count }, () => uniqueLabel(prefix));
  await provisionToken(labels[0]);
  for (const label of labels.slice(1)) {
    await provisionToken(label, 'aes', false);
    await cloneSharedKeys({
      suite: 'aes',
      from: { library: testLibrary(), label: labels[0], soPin: TEST_SO_PIN, userPin: TEST_USER_PIN },
      to: { library: testLibrary(), label, soPin: TEST_SO_PIN, userPin: TEST_USER_PIN },
    });
    await generateModuleKeys({ library: testLibrary(), label, soPin: TEST_SO_PIN, userPin: TEST_USER_PIN, suite: 'aes', roles: ['module-identity', 'module-transport'] });
  }
  return labels;
}

export function testConfig(labels: string[], over: Partial<Config> = {}): Config {
  return {
    varDir: process.env.VBI_TEST_ROOT as string,
    shard: 0,
    spoilageLimitBps: 100,
    walArchive: defaultWalArchive(process.env.VBI_TEST_ROOT as string),
    transcriptDir: join(process.env.VBI_TEST_ROOT as string, 'transcripts'),
    backupDir: join(process.env.VBI_TEST_ROOT as string, 'backups'),
    journalExportDir: join(process.env.VBI_TEST_ROOT as string, 'journal-export'),
    reportDir: join(process.env.VBI_TEST_ROOT as string, 'reports'),
    databaseStandbyUrls: [],
    userSecretsLifetimeMs: 730 * 86_400_000,
    suspension: DEFAULT_SUSPENSION_POLICY,
    keyRenewal: { renewBeforeMs: 30 * 86_400_000, intervalMs: 3_600_000 },
    hsm: { ...hsmConfig('aes'), modules: labels.map((tokenLabel) => ({ tokenLabel, userPin: TEST_USER_PIN, userType: 1 })) },
    ...over,
  };
}

export interface LedgerFixture {
  service: Service;
  db: Database;
  labels: string[];
  accountId: number;
  metergen: MeterGen;
  /**
   * A MeterGen meter (key certified by the test CA) assigned to the fixture's account and
   * licensed: it prints (docs/licensing.md).
   */
  newMeter(maxDescendingRegister: number, accountId?: number): Promise<{ meterId: string }>;
}

/** Writes as a superuser going around the journal's append-only trigger would. */
export async function asInsider(k: Knex, fn: (trx: Knex.Transaction) => Promise<void>): Promise<void> {
  await k.transaction(async (trx) => {
    await trx.raw("SET LOCAL session_replication_role = 'replica'");
    await fn(trx);
  });
}

/** What a mailer's print asks for besides the amount (tests). */
export const MAIL: Mailpiece = { destinationZip: '205000001', rateCategory: 'FCL', rateTableId: 1, rateTableVersion: 1 };

/** A service on fresh tokens and a fresh database, with a funded pool and one account. */
export async function ledgerFixture(opts: {
  modules?: number; labels?: string[]; db?: Database; ledger?: Pick<LedgerOptions, 'faults'>; moduleFaults?: Pick<CryptoModuleOptions, 'indiciumTemplateFault'>;
  /** false: no stock bought (the master PSD stays unsealed until the test moves it). */
  stock?: boolean;
} = {}): Promise<LedgerFixture> {
  const labels = opts.labels ?? (await provisionModules(opts.modules ?? 1));
  const db = opts.db ?? (await freshDatabase());
  const service = await createService({ config: testConfig(labels), db, ledger: opts.ledger, moduleFaults: opts.moduleFaults });
  if (opts.stock !== false) await service.ledger.purchaseFromPost({ amount: 100_000_000, reference: 'test stock' });
  const accountId = await service.ledger.createAccount({ name: 'Test Mailer', licensingZip: '20260' });
  const metergen = (await testPki()).metergen(new PgMeterStore(service.ledger));
  let n = 0;
  const newMeter = async (maxDescendingRegister: number, account = accountId) => {
    const meterId = `T${randomBytes(3).toString('hex').toUpperCase()}-${++n}`;
    await metergen.createMeter({ meterId, maxDescendingRegister });
    await service.ledger.assignMeter({ accountId: account, meterId });
    // These meters skip registration and its licence request: the module's `license` command is
    // run directly, as the licensing pass runs it once the authority approved a request.
    const { licensing_zip: licensingZip } = await db.knex('accounts').where({ account_id: account }).first('licensing_zip');
    await service.ledger.license({ meterId, licenceId: `TEST-${meterId}`, licensingZip });
    return { meterId };
  };
  return { service, db, labels, accountId, metergen, newMeter };
}

/**
 * Copies every table aside / puts the copy back, as a DBA restoring a snapshot would (the
 * signed audit log too: the insider's restore takes the evidence back with it).
 */
const TABLES = ['accounts', 'modules', 'meters', 'journal', 'indicia', 'pool', 'pool_purchases', 'payments', 'refunds', 'audit_log', 'certificates', 'meter_map', 'meter_map_nodes', 'licence_revocation_reports'];

export async function snapshot(db: Database, name: string): Promise<void> {
  for (const t of TABLES) await db.knex.raw(`CREATE TABLE ${name}_${t} AS SELECT * FROM ${t}`);
}

export async function restore(db: Database, name: string): Promise<void> {
  await db.knex.transaction(async (trx) => {
    await trx.raw(`TRUNCATE ${TABLES.join(', ')} CASCADE`);
    for (const t of TABLES) await trx.raw(`INSERT INTO ${t} SELECT * FROM ${name}_${t}`);
  });
}

/**
 * The audit records modules write about what happened to them, in order: every record but the
 * `service-started` one each start adds to every module's chain (test/module/audit-chain.test.ts) and
 * the `pool-purchased` records of stock entered before the master PSD (docs/audit.md).
 */
export async function moduleEvents(k: Knex): Promise<AuditRecord[]> {
  return (await auditRecords(k)).filter((r) => r.kind !== 'service-started' && r.kind !== 'pool-purchased');
}
