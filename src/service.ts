import { Config, DEV_SO_PIN, DEV_TOKEN_LABEL } from './config/config';
import { closeLibrary, openLibrary } from './hsm/pkcs11-library';
import { CryptoModule } from './hsm/crypto-module';
import { ensureDevToken } from './hsm/dev-token';
import { PsdEngine, EngineStatus } from './module/psd-engine';
import { AuditSink } from './module/audit';
import { Database, openDatabase } from './db/database';
import { Ledger, LedgerOptions } from './ledger/ledger';
import { databaseAuditSink } from './ledger/audit-store';

export interface Service {
  config: Config;
  db: Database;
  engines: PsdEngine[];
  ledger: Ledger;
  status(): { modules: EngineStatus[] };
  close(): Promise<void>;
}

/**
 * Composition root: configuration in, a running service out. No singletons: tests build as
 * many services as they like with their own configuration, clock, database and fault hooks.
 */
export async function createService(deps: {
  config: Config;
  clock?: () => number;
  audit?: AuditSink;
  /** An already-open database (tests); otherwise DATABASE_URL or the embedded server. */
  db?: Database;
  ledger?: Pick<LedgerOptions, 'faults'>;
}): Promise<Service> {
  const { config } = deps;
  const db = deps.db ?? (await openDatabase({ url: config.databaseUrl, varDir: config.varDir }));
  const lib = openLibrary(config.hsm.library, config.hsm.softhsm2Conf);
  const engines: PsdEngine[] = [];
  const sink = databaseAuditSink(db.knex);
  const audit: AuditSink = async (r) => {
    await sink(r);
    await deps.audit?.(r);
  };
  try {
    for (const m of config.hsm.modules) {
      if (m.tokenLabel === DEV_TOKEN_LABEL) {
        const r = await ensureDevToken({ library: lib, label: m.tokenLabel, soPin: DEV_SO_PIN, userPin: m.userPin, suite: config.hsm.suite });
        if (r.created) process.stderr.write(`provisioned SoftHSM2 dev token '${m.tokenLabel}' (init-token + generate)\n`);
      }
      const hsm = await CryptoModule.start({ library: lib, module: m, hsm: config.hsm, clock: deps.clock ? () => new Date(deps.clock!()) : undefined });
      engines.push(await PsdEngine.start({ hsm, ringSize: config.hsm.ringSize, clock: deps.clock, audit }));
    }
  } catch (e) {
    for (const e2 of engines) await e2.hsm.close();
    closeLibrary(lib);
    if (!deps.db) await db.close();
    throw e;
  }
  const ledger = new Ledger({ db: db.knex, engines, spoilageLimitBps: config.spoilageLimitBps, ...deps.ledger });
  await ledger.registerModules();
  return {
    config,
    db,
    engines,
    ledger,
    status: () => ({ modules: engines.map((e) => e.status()) }),
    close: async () => {
      for (const e of engines) await e.hsm.close();
      closeLibrary(lib);
      if (!deps.db) await db.close();
    },
  };
}
