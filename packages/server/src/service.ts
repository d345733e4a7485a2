import { vbiError } from '@vbi/core/errors';
import { Config, DEV_SO_PIN, devTokenLabel } from './config/config';
import { closeLibrary, openLibrary } from './hsm/pkcs11-library';
import { CryptoModule, CryptoModuleOptions } from './hsm/crypto-module';
import { ensureDevToken } from './hsm/dev-token';
import { PsdEngine, EngineStatus } from './module/psd-engine';
import { AuditSink } from './module/audit';
import { Database } from './db/database';
import { openShardDatabase } from './config/shard-database';
import { Ledger, LedgerOptions } from './ledger/ledger';
import { pgAuditStore } from './ledger/audit-store';
import { startupEvent } from './ledger/startup-audit';
import { randomBytes } from 'node:crypto';
import { instanceResource, Lease, leaseHeld, mapShardResource, moduleResource } from './ledger/module-lease';
import { MeterMapAnchor } from './module/map-anchor';

/** A module as /v1/health shows it: its state machine, ring and map, and whether it takes commands. */
export interface ModuleHealth extends EngineStatus {
  inRotation: boolean;
  outOfRotation: string | null;
}

export interface Service {
  config: Config;
  db: Database;
  engines: PsdEngine[];
  ledger: Ledger;
  /**
   * This process's instance id (32 hex, new at every start), held as the lease "instance <id>"
   * while the process lives: requests it runs are recorded as its own (idempotency owner).
   */
  instanceId: string;
  /** Whether the process with that instance id is alive (holds its instance lease). */
  instanceAlive(id: string): Promise<boolean>;
  status(): { modules: ModuleHealth[]; commits: { groups: number; commands: number; largest: number } };
  /**
   * One pass of the monitor (its timer runs it every moduleCheckIntervalMs): leases lost with
   * their connection are taken again, modules out of rotation are checked and put back.
   */
  checkModules(): Promise<string[]>;
  close(): Promise<void>;
}

/** How often lost leases are taken again and modules out of rotation health-checked and put back. */
export const MODULE_CHECK_INTERVAL_MS = 2_000;

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
  /** Module monitor period (ms); 0 turns it off (tests call ledger.checkModules() themselves). */
  moduleCheckIntervalMs?: number;
  /** Tests only: a token that refuses one request's template (CryptoModuleOptions). */
  moduleFaults?: Pick<CryptoModuleOptions, 'indiciumTemplateFault'>;
}): Promise<Service> {
  const { config } = deps;
  const db = deps.db ?? (await openShardDatabase(config));
  const lib = openLibrary(config.hsm.library, config.hsm.softhsm2Conf, config.hsm.profile, config.hsm.initParameters, config.hsm.threads);
  const engines: PsdEngine[] = [];
  const leases = new Map<PsdEngine, Lease>();
  const held: Lease[] = [];
  const anchor = new MeterMapAnchor();
  const audit = pgAuditStore(db.knex);
  const modules: CryptoModule[] = [];
  const instanceId = randomBytes(16).toString('hex');
  let instanceLease: Lease | undefined;
  let mapLease: Lease | undefined;
  try {
    instanceLease = await Lease.acquire({ url: () => db.primaryUrl(), resource: instanceResource(instanceId) });
    held.push(instanceLease);
    // One process serves the shard (its meter map) and each module; a second one stops here,
    // before it changes anything on a token.
    // A standby waits instead, and takes the shard over once the process serving it is gone.
    const take = config.standby ? Lease.waitFor : Lease.acquire;
    mapLease = await take({ url: () => db.primaryUrl(), resource: mapShardResource(config.shard) });
    held.push(mapLease);
    for (const m of config.hsm.modules) {
      if (m.tokenLabel === devTokenLabel(config.shard)) {
        const r = await ensureDevToken({ library: lib, label: m.tokenLabel, soPin: DEV_SO_PIN, userPin: m.userPin, suite: config.hsm.suite });
        if (r.created) process.stderr.write(`provisioned dev token '${m.tokenLabel}' (init-token + generate)\n`);
      }
      const hsm = await CryptoModule.start({ library: lib, module: m, hsm: config.hsm, clock: deps.clock ? () => new Date(deps.clock!()) : undefined, ...deps.moduleFaults });
      modules.push(hsm);
      // a token the service cannot use safely stops the start, with the probe's reasons
      if (hsm.unsuitable) throw vbiError('TOKEN_UNSUITABLE', hsm.unsuitable);
      const twin = modules.find((o) => o !== hsm && o.serial && o.serial === hsm.serial);
      if (twin) {
        throw vbiError('TOKEN_UNSUITABLE', `tokens '${twin.tokenLabel}' and '${hsm.tokenLabel}' have the same module serial ${hsm.serial}: use a token profile with serialSource identity-key`);
      }
      const lease = await take({ url: () => db.primaryUrl(), resource: moduleResource(hsm.serial) });
      held.push(lease);
      const engine = await PsdEngine.start({ hsm, ringSize: config.hsm.ringSize, clock: deps.clock, audit, onAudit: deps.audit, anchor });
      engines.push(engine);
      leases.set(engine, lease);
    }
  } catch (e) {
    for (const m of modules) await m.close();
    for (const l of held) await l.release();
    await closeLibrary(lib);
    if (!deps.db) await db.close();
    throw e;
  }
  const ledger = new Ledger({ db: db.knex, engines, leases, mapLease, ...deps.ledger });
  await ledger.start();
  for (const e of engines) {
    const now = new Date(deps.clock ? deps.clock() : Date.now());
    await e.record(await startupEvent(db.knex, db.url, config, e.hsm.serial, now));
  }
  const period = deps.moduleCheckIntervalMs ?? MODULE_CHECK_INTERVAL_MS;
  const check = async (): Promise<string[]> => {
    await instanceLease!.renew();
    return ledger.checkModules();
  };
  const monitor = period > 0 ? setInterval(() => { void check().catch(() => undefined); }, period) : undefined;
  monitor?.unref();
  return {
    config,
    db,
    engines,
    ledger,
    instanceId,
    checkModules: check,
    instanceAlive: (id) => leaseHeld(db.knex, instanceResource(id)),
    status: () => {
      const rotation = new Map(ledger.rotation().map((r) => [r.serial, r]));
      return {
        modules: engines.map((e) => {
          const r = rotation.get(e.hsm.serial);
          return { ...e.status(), inRotation: r?.inRotation ?? false, outOfRotation: r?.reason ?? null };
        }),
        commits: ledger.commitStats(),
      };
    },
    close: async () => {
      if (monitor) clearInterval(monitor);
      for (const e of engines) await e.hsm.close();
      for (const l of held) await l.release();
      await closeLibrary(lib);
      if (!deps.db) await db.close();
    },
  };
}
