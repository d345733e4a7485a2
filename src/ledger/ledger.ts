import type { Knex } from 'knex';
import { isVbiError, vbiError, VbiError } from '../errors';
import { GROUP_MAX, PsdEngine, DispatchResult, PsdCommand, PreparedCommand } from '../module/psd-engine';
import { MeterMapView } from '../module/meter-map';
import { METER_ID_PATTERN, PsdPackage } from '../psd/psd-package';
import { postageValueDownload } from '../module/commands/postage-value-download';
import { assignMeter } from '../module/commands/assign-meter';
import { suspendMeter } from '../module/commands/suspend';
import { reactivateMeter } from '../module/commands/reactivate';
import { LicenceResult, licenseMeter, revokeLicence } from '../module/commands/licence';
import { fullRefund, withdraw } from '../module/commands/refund';
import { Registers } from '../module/commands/guards';
import { assertMills } from './amounts';
import { recordRefund } from './refund-rows';
import { MASTER_PSD_ID, MASTER_PSD_SLOT, MasterRegisters, PoolMovement, masterPsdCommand } from '../module/commands/master-psd';
import { Lease } from './module-lease';
import { claimMap, lockModuleAndMap, lockModuleAndMapFor, readMapRow } from './pg-meter-map';
import { CommandRows, storeCommands } from './store-command';
import { reinstateModule } from './reinstatement';
import type { Approval } from './officer-approval';
import { AuditEvent, AuditRecord } from '../module/audit';
import { commitOrThrow } from '../db/commit';

export interface LedgerOptions {
  db: Knex;
  engines: PsdEngine[];
  /** Each module's lease (src/ledger/module-lease.ts); a module whose lease is lost leaves the rotation. */
  leases?: Map<PsdEngine, Lease>;
  /** The meter map shard's lease: while it is lost, no command runs (NO_MODULE). */
  mapLease?: Lease;
  /**
   * Most commands committed together on one module (group commit, docs/ledger.md); default 32,
   * at most GROUP_MAX / 2 (a step may write two records: its own and the master PSD's). 1 turns
   * grouping off.
   */
  groupMax?: number;
  /**
   * Fault injection for tests: `beforeCommit` runs after every write, just before COMMIT;
   * `afterCommit` right after COMMIT, before the ring append (a crash there must roll forward).
   */
  faults?: {
    beforeCommit?: (info: { meterId: string; type: string }) => void | Promise<void>;
    afterCommit?: (info: { meterId: string; type: string }) => void | Promise<void>;
  };
}

/** What the module runs on the meter's package, with what the step's `before` read for it. */
export type Execute<R, I = void> = (pkg: Parameters<PsdCommand<R>['execute']>[0], ctx: Parameters<PsdCommand<R>['execute']>[1], input: I) => ReturnType<PsdCommand<R>['execute']>;

/**
 * Errors that take the module that raised them out of rotation; the command goes to the next
 * module. A plain token error (HSM_ERROR) does so only when the module's health check then fails:
 * otherwise it was this command's own failure and the module keeps serving. A refused template or
 * mechanism (HSM_OPERATION_REFUSED) is always the command's own: no health check, no rotation change.
 */
const MODULE_FAULTS = [
  'MODULE_INHIBITED', 'MODULE_ERROR', 'MODULE_NOT_READY', 'CHECKPOINT_MISMATCH', 'RECOVERY_FAILED', 'MAP_AHEAD', 'KEY_ATTRIBUTES_WEAK', 'TOKEN_UNSUITABLE',
];

/**
 * One command for the runner. Its phases hand their values on instead of writing to variables of
 * the caller: `before` reads and locks rows and returns the step's input `I`; `execute` runs in
 * the module with that input; `after` writes the step's own rows and returns what the caller
 * gets back (`stored`, of type `S`); `details` and `receipt` describe the journal row.
 */
export interface Step<R, I = void, S = void> {
  meterId: string;
  /** True for the command that creates the meter row. */
  creates?: boolean;
  /**
   * Only this module may run the command: a client encrypted its secrets to that module's
   * transport key (registration, session open). NO_MODULE if it is out of rotation.
   */
  moduleSerial?: string;
  type: string;
  /** What the module runs on the meter's package; not given for the master PSD's own step (`master`). */
  execute?: Execute<R, I>;
  /**
   * The step is the master PSD's own (stock bought from the post): the runner runs this movement
   * on the master PSD (Ledger.runMaster) instead of a meter command; `meterId` is MASTER_PSD_ID.
   */
  master?: PoolMovement;
  /**
   * Checks and locks in the same transaction before the module runs (pool, original indicium,
   * the session); what it returns is the step's input to `execute`, `after` and `details`.
   */
  before?: (trx: Knex.Transaction) => Promise<I>;
  /**
   * The command may run side by side with other such commands of its group (docs/ledger.md,
   * "Group commit"): `before` only reads and locks rows, and `execute` depends on nothing but
   * its own meter's package. Print and correction requests.
   */
  sideBySide?: boolean;
  /** Rows besides meter, module and journal, written in the same transaction; what it returns reaches the caller as `stored`. */
  after?: (trx: Knex.Transaction, out: DispatchResult<R>, at: Date, input: I) => Promise<S>;
  /**
   * The vendor's master PSD moves with this command (PVD, refunds): once the meter's record is
   * written, the master PSD's record follows it in the same transaction, on the same module
   * (Ledger.runMaster); a refusal there (POOL_EXHAUSTED) fails the command. Null or 0 mills: no movement.
   */
  pool?: (out: DispatchResult<R>) => PoolMovement | null;
  /** What the journal's encrypted payload records about the command. */
  details: (out: DispatchResult<R>, input: I) => Record<string, unknown>;
  /** The receipt the module signed for the mailer, kept with the journal row for the resync exchange. */
  receipt?: (out: DispatchResult<R>) => unknown;
}

/** What a step gave back: the module's result and what its `after` stored. */
export interface StepResult<R, S = void> extends DispatchResult<R> {
  stored: S;
}

/** A step of any types, as the runner queues and groups it. */
type AnyStep = Step<unknown, unknown, unknown>;

/** A command waiting for its module's next group. */
interface Queued {
  step: AnyStep;
  resolve: (out: StepResult<unknown, unknown>) => void;
  reject: (e: unknown) => void;
}

/**
 * The transaction engine, commit-then-checkpoint (docs/ledger.md). Every command is one module
 * dispatch; commands waiting for the same module are committed together as a group: under the
 * process's map lock, one PostgreSQL transaction, and for each command in turn (each in a
 * savepoint when the group has more than one) lock the meter row, the module's row and the meter
 * map row, read the map proof for the meter's slot and the meter's newest journal checkpoint; the
 * module prepares (checks, runs, re-seals, MACs the next record, chained to the one before);
 * write package + checkpoint + journal + map + result. Side-by-side commands of different meters
 * (print requests) are read together, run by the module at the same time and written together
 * (runSideBySide). Then one COMMIT; the module appends the
 * group's last record to its ring; only then are the results returned to the callers. A command
 * that fails alone (its savepoint rolled back) leaves the others' results as they are. A
 * checkpoint or map mismatch reconciles every module (roll forward, or inhibit) and retries once;
 * an inhibited or failed module leaves the rotation; with none left, NO_MODULE.
 *
 * A group forms only from commands that arrive while the module is busy: a command on an idle
 * module goes alone at once, with no added wait. No database connection is held while waiting.
 */
export class Ledger {
  private readonly inFlight = new Map<PsdEngine, number>();
  private readonly outOfRotation = new Map<PsdEngine, string>();
  private checking: Promise<string[]> | undefined;
  private readonly queues = new Map<PsdEngine, Queued[]>();
  private readonly draining = new Set<PsdEngine>();
  private readonly groupMax: number;
  private readonly commits = { groups: 0, commands: 0, largest: 0 };
  /** The shard's ownership epoch this process claimed (claimMap); every group's map write requires it. */
  private ownerEpoch: number | undefined;
  /** Set once another process took the shard over: nothing runs here any more (SHARD_LOST). */
  private shardLost: string | null = null;

  constructor(private readonly opts: LedgerOptions) {
    for (const e of opts.engines) this.inFlight.set(e, 0);
    this.groupMax = Math.max(1, Math.min(GROUP_MAX / 2, opts.groupMax ?? 32));
  }

  get db(): Knex {
    return this.opts.db;
  }

  /**
   * Start-up: every module gets its row in the module table (no checkpoint yet for a new one),
   * then each ring is reconciled with the database (roll forward after a crash between COMMIT
   * and ring append; a rollback or an edit inhibits the module).
   */
  async start(): Promise<void> {
    if (this.opts.mapLease) await this.claimShard();
    await this.registerModules();
    await this.reconcileAll();
  }

  /**
   * Takes the shard for this process, which holds its lease (docs/operations.md, "Several
   * processes, several tokens"): a new ownership epoch, required by every group's map write from
   * now on. A process that held the shard before can then commit nothing more (SHARD_LOST).
   */
  private async claimShard(): Promise<void> {
    this.ownerEpoch = await claimMap(this.db);
    this.shardLost = null;
  }

  /** Why this process serves its shard no more (another took it over), or null. */
  lostShard(): string | null {
    return this.shardLost;
  }

  /**
   * Officer reinstatement of one of this process's modules (src/ledger/reinstatement.ts); the
   * module returns to the rotation. The ceremony CLI does the same with the service stopped.
   */
  async reinstate(req: { moduleSerial: string; officer: string; acceptCheckpoint: Buffer | null; approvals: Approval[] }): Promise<AuditRecord | undefined> {
    const engine = this.opts.engines.find((e) => e.hsm.serial === req.moduleSerial);
    if (!engine) throw vbiError('UNKNOWN_MODULE', `no module ${req.moduleSerial} in this service`);
    const audit = await reinstateModule({ db: this.db, engine, officer: req.officer, acceptCheckpoint: req.acceptCheckpoint, approvals: req.approvals });
    this.outOfRotation.delete(engine);
    return audit;
  }

  /** Makes sure every module has its row in the module table (no checkpoint yet for a new one). */
  async registerModules(): Promise<void> {
    for (const e of this.opts.engines) {
      if (!e.hsm.serial) continue;
      await this.db('modules').insert({ module_serial: e.hsm.serial, token_label: e.hsm.tokenLabel }).onConflict('module_serial').ignore();
    }
  }

  /** A healthy module for operations that change no package (signing a certification request). */
  anyModule(): PsdEngine['hsm'] {
    return this.pick(new Set()).hsm;
  }

  /**
   * A check that changes nothing on a meter's package as the database holds it, by a module in
   * rotation (PsdEngine.inspect): no dispatch, no checkpoint, no row locked. UNKNOWN_METER when
   * the meter has no row.
   */
  async inspect<T>(meterId: string, check: (pkg: PsdPackage, hsm: PsdEngine['hsm']) => Promise<T>): Promise<T> {
    const meter = await this.db('meters').where({ meter_id: meterId }).first('package');
    if (!meter) throw vbiError('UNKNOWN_METER', `no meter ${meterId}`);
    return this.pick(new Set()).inspect(meterId, meter.package, check);
  }

  /** Runs `op` with the module `serial` of this service (UNKNOWN_MODULE if there is none): what a module signs outside any package. */
  onModule<T>(serial: string, op: (hsm: PsdEngine['hsm']) => Promise<T>): Promise<T> {
    const engine = this.opts.engines.find((e) => e.hsm.serial === serial);
    if (!engine) throw vbiError('UNKNOWN_MODULE', `no module ${serial} in this service`);
    return op(engine.hsm);
  }

  /** The modules of this service (for their certificates and transport keys). */
  modules(): PsdEngine['hsm'][] {
    return this.opts.engines.map((e) => e.hsm);
  }

  /**
   * The modules a command may go to now: not taken out of the rotation, lease held, and serving
   * (not inhibited, not in Error). The module directory (GET /v1/modules) lists only these, so a
   * client moving to another module is not sent to one the ledger would refuse.
   */
  servingModules(): PsdEngine['hsm'][] {
    if (this.shardLost) return [];
    return this.opts.engines
      .filter((e) => !this.outOfRotation.has(e) && !this.opts.leases?.get(e)?.lost && ['Idle', 'User'].includes(e.status().state))
      .map((e) => e.hsm);
  }

  /**
   * What a command committed may be answered again from the database only once its checkpoint
   * record is in its module's ring, where a rolled-back database would be caught. A record whose
   * ring append failed is rolled forward here first (reconcile); if it still is not in the ring,
   * CHECKPOINT_APPEND_FAILED and nothing is released. Records of a ring are consecutive, so any
   * newer one will do.
   */
  async ensureCheckpointed(moduleSerial: string, seq: number): Promise<void> {
    const inRing = () => {
      const newest = this.opts.engines.find((x) => x.hsm.serial === moduleSerial)?.status().ring.newestSeq;
      return newest !== null && newest !== undefined && newest >= seq;
    };
    if (inRing()) return;
    await this.reconcileAll();
    if (!inRing()) throw vbiError('CHECKPOINT_APPEND_FAILED', `record ${seq} of module ${moduleSerial} is not in its ring: nothing is released`, { moduleSerial });
  }

  /** Groups committed and released since start, the commands in them, and the largest group. */
  commitStats(): { groups: number; commands: number; largest: number } {
    return { ...this.commits };
  }

  /** Every module of this process: in rotation or taken out by it, and why. */
  rotation(): Array<{ serial: string; label: string; inRotation: boolean; reason: string | null }> {
    return this.opts.engines.map((e) => ({
      serial: e.hsm.serial, label: e.hsm.tokenLabel,
      inRotation: !this.outOfRotation.has(e), reason: this.outOfRotation.get(e) ?? null,
    }));
  }

  // --- the vendor's pool ----------------------------------------------------------------

  /**
   * Postage bought from the post enters the pool (master PSD), once per post's reference: the
   * same reference with the same amount is the same purchase (a retry: `created` false), with
   * another amount POOL_PURCHASE_CONFLICT. Every purchase is a command of the master PSD on a
   * module in rotation (a `pool-purchase` record): none in rotation is NO_MODULE, and nothing is
   * entered.
   */
  async purchaseFromPost(req: { amount: number; reference: string; operator?: string }): Promise<{ purchaseId: number; amount: number; reference: string; created: boolean }> {
    const amount = assertMills(req.amount);
    if (typeof req.reference !== 'string' || req.reference.trim().length === 0 || req.reference.length > 128) {
      throw vbiError('BAD_REQUEST', "the post's reference must be 1 to 128 characters");
    }
    const existing = async () => {
      const row = await this.db('pool_purchases').where({ reference: req.reference }).first('purchase_id', 'amount');
      if (!row) return undefined;
      if (Number(row.amount) !== amount) {
        throw vbiError('POOL_PURCHASE_CONFLICT', `the post's reference ${req.reference} was entered with ${row.amount} mills`, { purchaseId: Number(row.purchase_id) });
      }
      return { purchaseId: Number(row.purchase_id), amount, reference: req.reference, created: false };
    };
    const before = await existing();
    if (before) return before;
    // a master PSD command (docs/ledger.md, "The master PSD"): the stock enters its sealed
    // descending register, with a checkpoint record and a journal row, in the purchase's own
    // transaction; conservation counts the master PSD's purchase records as the stock bought
    let purchaseId = 0;
    try {
      await this.run<MasterRegisters>({
        meterId: MASTER_PSD_ID, type: 'pool-purchase', master: { kind: 'purchase', amount },
        details: () => ({ kind: 'purchase', amount, reference: req.reference, operator: req.operator ?? null }),
        after: async (trx) => {
          const [row] = await trx('pool_purchases').insert({ amount, reference: req.reference, entered_by: req.operator ?? null }).returning('purchase_id');
          purchaseId = Number(row.purchase_id);
        },
      });
    } catch (e) {
      // the same reference entered at the same moment by another request
      if ((e as { code?: string }).code === '23505') return (await existing())!;
      throw e;
    }
    return { purchaseId, amount, reference: req.reference, created: true };
  }

  async pool(): Promise<{ purchased: number; available: number; refundsPaid: number }> {
    const r = await this.db('pool').where({ pool_id: 1 }).first();
    return { purchased: r.purchased, available: r.available, refundsPaid: r.refunds_paid };
  }

  // --- accounts and meters --------------------------------------------------------------

  async createAccount(req: { name: string; licensingZip: string }): Promise<number> {
    if (typeof req.name !== 'string' || !req.name.trim() || req.name.length > 200) throw vbiError('BAD_REQUEST', 'name is required (at most 200 characters)');
    if (typeof req.licensingZip !== 'string' || !/^\d{5}$/.test(req.licensingZip)) throw vbiError('BAD_REQUEST', 'licensing ZIP must be 5 digits');
    const [row] = await this.db('accounts').insert({ name: req.name.trim(), licensing_zip: req.licensingZip }).returning('account_id');
    return row.account_id;
  }

  /**
   * Puts a certified, unassigned MeterGen meter into service for an account (meter-assign).
   * Without `meterId`, takes the next one from the pool of certified, unassigned meters.
   */
  async assignMeter(req: { accountId: number; meterId?: string }): Promise<{ meterId: string; certSerial: string }> {
    const account = await this.db('accounts').where({ account_id: req.accountId }).first();
    if (!account) throw vbiError('BAD_REQUEST', `no account ${req.accountId}`);
    for (let attempt = 0; attempt < 5; attempt++) {
      const meterId = req.meterId ?? (await this.db('meters').where({ state: 'unassigned' }).whereNotNull('cert_serial').whereNull('account_id')
        .orderBy('meter_id').first('meter_id'))?.meter_id;
      if (!meterId) throw vbiError('NO_METER_AVAILABLE', 'the pool of certified, unassigned meters is empty (run MeterGen)');
      try {
        const out = await this.run({
          meterId, type: 'meter-assign', execute: assignMeter({ licensingZip: account.licensing_zip }),
          details: () => ({ accountId: req.accountId }),
          after: async (trx) => {
            await trx('meters').where({ meter_id: meterId }).update({ account_id: req.accountId });
          },
        });
        return { meterId, certSerial: out.result.certSerial };
      } catch (e) {
        // another registration took the same pooled meter first: take the next one
        if (req.meterId || !isVbiError(e, 'BAD_REQUEST')) throw e;
      }
    }
    throw vbiError('NO_METER_AVAILABLE', 'no pooled meter could be assigned');
  }

  /** Certified, unassigned meters waiting in the pool (MeterGen keeps this above a threshold). */
  async unassignedMeters(): Promise<number> {
    const r = await this.db('meters').where({ state: 'unassigned' }).whereNotNull('cert_serial').whereNull('account_id').count({ n: '*' }).first();
    return Number(r?.n ?? 0);
  }

  // --- PSD commands -----------------------------------------------------------------------

  /** PostageValueDownload: pool → meter DR, never past max DR, pool registers in the same transaction. */
  async postageValueDownload(req: { meterId: string; amount: number }): Promise<Registers> {
    const amount = assertMills(req.amount);
    const out = await this.run({
      meterId: req.meterId, type: 'pvd', execute: postageValueDownload({ amount }),
      pool: () => ({ kind: 'download', amount, meterId: req.meterId }),
      details: () => ({ amount }),
    });
    return out.result;
  }

  /**
   * Suspend a meter — by the fraud policy, or by an operator (e.g. reported lost or stolen): its
   * DR is disabled until an operator reactivates it. Audited by the module that ran it.
   */
  async suspendMeter(req: { meterId: string; reason: string; operator?: string }): Promise<Registers> {
    const out = await this.run({ meterId: req.meterId, type: 'suspend', execute: suspendMeter(), details: () => ({ reason: req.reason, operator: req.operator }) });
    await this.audit(out, {
      kind: 'meter-suspended', reason: req.operator ? `suspended by operator ${req.operator}: ${req.reason}` : req.reason,
      details: { meterId: req.meterId, operator: req.operator ?? null },
    });
    return out.result;
  }

  /** An operator reactivates a suspended meter after reviewing its cases; audited with the operator's name. */
  async reactivateMeter(req: { meterId: string; operator: string; reason: string }): Promise<Registers> {
    const out = await this.run({
      meterId: req.meterId, type: 'reactivate', execute: reactivateMeter(), details: () => ({ operator: req.operator, reason: req.reason }),
    });
    await this.audit(out, { kind: 'meter-reactivated', reason: `reactivated by operator ${req.operator}: ${req.reason}`, details: { meterId: req.meterId, operator: req.operator } });
    return out.result;
  }

  /**
   * The licensing authority's licence into the meter's package (docs/licensing.md): the module's
   * `license` command. With `requestId`, the licence request row must still be pending and
   * becomes `licensed` in the same transaction; without one (a meter made without registration,
   * e.g. by the engine's tests) only the package changes.
   */
  async license(req: { meterId: string; licenceId: string; licensingZip: string; requestId?: number }): Promise<LicenceResult> {
    const out = await this.run({
      meterId: req.meterId, type: 'license', execute: licenseMeter({ licenceId: req.licenceId, licensingZip: req.licensingZip }),
      before: async (trx) => {
        if (req.requestId === undefined) return;
        const row = await trx('license_requests').where({ request_id: req.requestId, meter_id: req.meterId }).forUpdate().first('status');
        if (row?.status !== 'pending') throw vbiError('BAD_REQUEST', `licence request ${req.requestId} of meter ${req.meterId} is ${row?.status ?? 'unknown'}, not pending`);
      },
      after: async (trx, _o, at) => {
        if (req.requestId === undefined) return;
        await trx('license_requests').where({ request_id: req.requestId }).update({ status: 'licensed', licence_id: req.licenceId, decided_at: at, reason: null, last_error: null });
      },
      details: () => ({ licenceId: req.licenceId, licensingZip: req.licensingZip, requestId: req.requestId ?? null }),
    });
    return out.result;
  }

  /**
   * An operator revokes a meter's licence (docs/licensing.md): the module's `revoke-licence`
   * command; the meter prints nothing more. Its open or granted licence requests become `revoked`
   * in the same transaction, and a licence the authority granted (the package holds its number) is
   * queued there for reporting to the authority (licence_revocation_reports, sent by the licensing
   * pass); audited with the operator's name and reason. `authority`: the licensing authority
   * revoked the licence itself (its event feed, src/licensing/authority-revocations.ts) — the same
   * command, audited as the authority's, and nothing is reported back to it.
   */
  async revokeLicence(req: { meterId: string; operator: string; reason: string; authority?: string }): Promise<LicenceResult> {
    const by = req.authority ? `the licensing authority (${req.authority})` : `operator ${req.operator}`;
    const out = await this.run({
      meterId: req.meterId, type: 'revoke-licence', execute: revokeLicence(),
      after: async (trx, o, at) => {
        await trx('license_requests').where({ meter_id: req.meterId }).whereIn('status', ['registering', 'pending', 'licensed'])
          .update({ status: 'revoked', revoked_at: at, reason: `revoked by ${by}: ${req.reason}` });
        // no licence number: never licensed by the authority (or grandfathered), nothing to report;
        // revoked by the authority itself: it knows
        if (o.package.licenceId && !req.authority) {
          await trx('licence_revocation_reports').insert({ meter_id: req.meterId, licence_id: o.package.licenceId, reason: req.reason, revoked_at: at });
        }
      },
      details: () => ({ operator: req.operator, reason: req.reason, authority: req.authority ?? null }),
    });
    await this.audit(out, {
      kind: 'meter-licence-revoked', reason: `licence revoked by ${by}: ${req.reason}`,
      details: { meterId: req.meterId, operator: req.operator, licenceId: out.package.licenceId || null, authority: req.authority ?? null },
    });
    return out.result;
  }

  /** Records an event in the audit chain of the module that ran `out`'s command, naming its checkpoint. */
  private async audit(out: DispatchResult<unknown>, event: Omit<AuditEvent, 'at'>): Promise<void> {
    const engine = this.opts.engines.find((e) => e.hsm.serial === out.record.moduleSerial);
    await engine?.record({ ...event, at: new Date(out.record.time).toISOString(), details: { ...event.details, checkpointSeq: out.record.seq } });
  }

  /** Withdraw: close an empty meter (an operator's decision: audited with the operator's name). */
  async withdraw(req: { meterId: string; operator?: string; reason?: string }): Promise<Registers> {
    const out = await this.run({ meterId: req.meterId, type: 'withdraw', execute: withdraw(), details: () => ({ operator: req.operator, reason: req.reason }) });
    if (req.operator) {
      await this.audit(out, { kind: 'meter-withdrawn', reason: `withdrawn by operator ${req.operator}: ${req.reason ?? ''}`, details: { meterId: req.meterId, operator: req.operator } });
    }
    return out.result;
  }

  /**
   * An operator closes a meter and refunds what it still holds — the lost/stolen policy
   * (docs/api-conventions.md): a meter reported lost or stolen is suspended at once; after review,
   * this closes it for good (it never prints again) and its remaining DR goes back to the pool as
   * a full refund, recorded for the payout to the mailer. Audited with the operator's name.
   */
  async refundAndClose(req: { meterId: string; operator: string; reason: string }): Promise<Registers & { refunded: number; refundId: number }> {
    let refundId = 0;
    const out = await this.run({
      meterId: req.meterId, type: 'refund', execute: fullRefund(), details: () => ({ kind: 'full', operator: req.operator, reason: req.reason }),
      pool: (o) => ({ kind: 'return', amount: o.result.refunded, meterId: req.meterId }),
      after: async (trx, o, at) => {
        refundId = await recordRefund(trx, { meterId: req.meterId, kind: 'full', amount: o.result.refunded, reason: `operator ${req.operator}: ${req.reason}`, record: o.record, at });
      },
    });
    await this.audit(out, {
      kind: 'meter-refunded-closed', reason: `closed with its remaining ${out.result.refunded} mills refunded by operator ${req.operator}: ${req.reason}`,
      details: { meterId: req.meterId, operator: req.operator, refunded: out.result.refunded, refundId },
    });
    return { ...out.result, refundId };
  }

  /** Registers as the database's non-secret columns hold them (the sealed package is the authority). */
  async registers(meterId: string): Promise<Registers & { state: string; recordCounter: number }> {
    const m = await this.db('meters').where({ meter_id: meterId }).first();
    if (!m) throw vbiError('UNKNOWN_METER', `no meter ${meterId}`);
    const refunded = await this.db('refunds').where({ meter_id: meterId }).sum({ s: 'amount' }).first();
    return {
      ascendingRegister: m.ascending_register, descendingRegister: m.descending_register,
      refundRegister: Number(refunded?.s ?? 0), state: m.state, recordCounter: m.record_counter,
    };
  }

  // --- the command runner -------------------------------------------------------------------

  /**
   * The module for the next command: one whose next group is forming (commands waiting, room
   * left) takes it — all modules of a process commit one group at a time (the map lock), so
   * splitting a forming group over two modules would only make both smaller; otherwise the
   * module with the fewest commands in flight.
   */
  private pick(tried: Set<PsdEngine>): PsdEngine {
    let best: PsdEngine | undefined;
    let forming: PsdEngine | undefined;
    const waiting = (e: PsdEngine) => this.queues.get(e)?.length ?? 0;
    for (const e of this.opts.engines) {
      if (tried.has(e) || this.outOfRotation.has(e)) continue;
      const lost = this.opts.leases?.get(e)?.lost;
      if (lost) {
        this.outOfRotation.set(e, `lease lost: ${lost}`);
        continue;
      }
      const st = e.status().state;
      if (st !== 'Idle' && st !== 'User') {
        this.outOfRotation.set(e, `${st}: ${e.status().reason ?? ''}`);
        continue;
      }
      if (!best || (this.inFlight.get(e) ?? 0) < (this.inFlight.get(best) ?? 0)) best = e;
      if (waiting(e) > 0 && waiting(e) < this.groupMax && (!forming || waiting(e) > waiting(forming))) forming = e;
    }
    if (!best) {
      throw vbiError('NO_MODULE', 'no healthy cryptographic module is available', { modules: this.rotation() });
    }
    return forming ?? best;
  }

  /**
   * One pass of the module monitor (the service runs it on a timer): every module out of rotation
   * that is not inhibited and whose lease is held is reconnected if it is in Error, health-checked,
   * reconciled with its database row (a ring append lost after COMMIT rolls forward here), and
   * returns to the rotation when all of that passes. Returns the modules put back.
   */
  checkModules(): Promise<string[]> {
    // one pass at a time: the monitor's timer and an explicit call must not interleave (a second
    // pass could put a module back while the first is still restarting it)
    this.checking ??= this.checkModulesOnce().finally(() => {
      this.checking = undefined;
    });
    return this.checking;
  }

  private async checkModulesOnce(): Promise<string[]> {
    const back: string[] = [];
    // a lease lost with its connection (the database restarted) is taken again when free, and the
    // shard claimed again (another process may have served it meanwhile)
    if (this.opts.mapLease && !(await this.opts.mapLease.check(this.db))) {
      if (!(await this.opts.mapLease.renew())) return back;
      await this.claimShard();
    }
    for (const e of this.opts.engines) {
      const lease = this.opts.leases?.get(e);
      // a lease may look held on a connection that outlived a database restart: ask the server
      if (lease) await lease.check(this.db);
      if (lease?.lost && !this.outOfRotation.has(e)) this.outOfRotation.set(e, `lease lost: ${lease.lost}`);
      if (!this.outOfRotation.has(e)) continue;
      if (e.status().state === 'Inhibited') continue;
      let renewed = false;
      if (lease?.lost) {
        if (!(await lease.renew())) continue;
        renewed = true;
      }
      try {
        // another process may have used the token while the lease was away: reload its ring
        if (renewed || e.hsm.status().state === 'Error') await e.restart();
        const health = await e.hsm.healthCheck();
        if (!health.ok) continue;
        const row = await this.db('modules').where({ module_serial: e.hsm.serial }).first('checkpoint');
        await e.reconcile(row?.checkpoint ?? null, this.journalRecords(e));
      } catch (err) {
        if (err instanceof VbiError) this.outOfRotation.set(e, `${err.code}: ${err.message}`);
        continue;
      }
      this.outOfRotation.delete(e);
      await this.db('modules').where({ module_serial: e.hsm.serial }).update({ in_rotation: true, out_reason: null, updated_at: this.db.fn.now() }).catch(() => undefined);
      back.push(e.hsm.serial);
    }
    return back;
  }

  private takeOut(e: PsdEngine, why: string): void {
    this.outOfRotation.set(e, why);
    void this.db('modules').where({ module_serial: e.hsm.serial }).update({ in_rotation: false, out_reason: why.slice(0, 500), updated_at: this.db.fn.now() }).catch(() => undefined);
  }

  /**
   * Brings every serving module's ring in step with its database row (PsdEngine.reconcile),
   * under the map lock; a module that finds a rollback or an edit is inhibited and leaves the
   * rotation.
   */
  private async reconcileAll(): Promise<void> {
    const engines = this.opts.engines;
    if (engines.length === 0) return;
    await engines[0].exclusive(async () => {
      for (const e of engines) {
        const st = e.status().state;
        if (st !== 'Idle' && st !== 'User') continue;
        const row = await this.db('modules').where({ module_serial: e.hsm.serial }).first('checkpoint');
        try {
          await e.reconcile(row?.checkpoint ?? null, this.journalRecords(e));
        } catch (r) {
          if (!(r instanceof VbiError)) throw r;
          this.takeOut(e, `${r.code}: ${r.message}`);
        }
      }
    });
  }

  /** The journal's checkpoint records of a module after a sequence number, oldest first (a committed group's chain). */
  private journalRecords(e: PsdEngine): (seq: number) => Promise<Buffer[]> {
    return async (seq) => (await this.db('journal').where({ module_serial: e.hsm.serial }).where('checkpoint_seq', '>', seq)
      .orderBy('checkpoint_seq').limit(GROUP_MAX).select('checkpoint')).map((r: { checkpoint: Buffer }) => r.checkpoint);
  }

  /**
   * Runs one module command (see the class comment). Public for the other services built on the
   * engine (MeterGen store, the mailer protocol); callers validate input first.
   */
  async run<R, I = void, S = void>(step: Step<R, I, S>): Promise<StepResult<R, S>> {
    if (typeof step.meterId !== 'string' || !METER_ID_PATTERN.test(step.meterId)) throw vbiError('UNKNOWN_METER', 'no such meter');
    if (this.shardLost) throw vbiError('SHARD_LOST', this.shardLost);
    const named = step.moduleSerial !== undefined;
    const tried = new Set<PsdEngine>(named ? this.opts.engines.filter((e) => e.hsm.serial !== step.moduleSerial) : []);
    if (named && tried.size === this.opts.engines.length) throw vbiError('UNKNOWN_MODULE', `no module ${step.moduleSerial} in this service`);
    let reconciled = false;
    for (;;) {
      const engine = this.pick(tried);
      this.inFlight.set(engine, (this.inFlight.get(engine) ?? 0) + 1);
      try {
        return await this.submit(engine, step as unknown as AnyStep) as StepResult<R, S>;
      } catch (e) {
        if (!(e instanceof VbiError)) throw e;
        if ((e.code === 'CHECKPOINT_MISMATCH' || e.code === 'MAP_AHEAD') && !reconciled) {
          reconciled = true;
          await this.reconcileAll();
          continue; // retry once, on whatever module is still in rotation
        }
        if (e.code === 'MAP_AHEAD') {
          // still ahead after every module was reconciled: no record of ours explains it
          const row = await readMapRow(this.db);
          await engine.refuseMap({ epoch: row?.epoch ?? -1, root: row?.root ?? Buffer.alloc(0) }).catch((r) => {
            if (!(r instanceof VbiError)) throw r;
          });
        }
        if (MODULE_FAULTS.includes(e.code)) {
          this.takeOut(engine, `${e.code}: ${e.message}`);
          tried.add(engine);
          continue;
        }
        if (e.code === 'HSM_ERROR') {
          const health = await engine.hsm.healthCheck();
          if (!health.ok) {
            this.takeOut(engine, `${e.code}: ${e.message}; health check failed: ${health.reason ?? ''}`);
            tried.add(engine);
            continue;
          }
        }
        throw e;
      } finally {
        this.inFlight.set(engine, (this.inFlight.get(engine) ?? 1) - 1);
      }
    }
  }

  /** Queues `step` for `engine`'s next group; a module with no group running starts one at once. */
  private submit(engine: PsdEngine, step: AnyStep): Promise<StepResult<unknown, unknown>> {
    // a caller that already holds the map lock (re-entry) cannot wait for a group: it runs alone,
    // and never inside a group that is still open (a command's hook must not start another)
    if (engine.anchor.lock.heldHere()) {
      if (engine.groupOpen) throw new Error(`module ${engine.hsm.serial}: a command started inside an open group`);
      return this.runGroup(engine, [step]).then(async (r) => {
        await r.appended;
        return unwrap(r.outcomes[0]);
      });
    }
    return new Promise<StepResult<unknown, unknown>>((resolve, reject) => {
      const q = this.queues.get(engine) ?? [];
      this.queues.set(engine, q);
      q.push({ step, resolve, reject });
      if (!this.draining.has(engine)) void this.drain(engine);
    });
  }

  /**
   * Runs the module's queue group by group until it is empty. A group's results are released
   * once its record is in the ring; the next group is prepared while that append runs (its
   * COMMIT waits for it: PsdEngine.settleAppend).
   */
  private async drain(engine: PsdEngine): Promise<void> {
    this.draining.add(engine);
    try {
      const q = this.queues.get(engine)!;
      while (q.length > 0) {
        const group = q.splice(0, this.groupMax);
        let ran: GroupRun;
        try {
          ran = await engine.exclusive(() => this.runGroup(engine, group.map((g) => g.step)));
        } catch (e) {
          group.forEach((g) => g.reject(e));
          continue;
        }
        void ran.appended.then(
          () => group.forEach((g, i) => {
            const o = ran.outcomes[i];
            if (o.out) g.resolve(o.out);
            else g.reject(o.error);
          }),
          (e: unknown) => group.forEach((g) => g.reject(e)),
        );
      }
    } finally {
      this.draining.delete(engine);
    }
  }

  /**
   * One group: one transaction, one COMMIT, one ring append. Side-by-side steps of different
   * meters run as one part (runSideBySide); any other step runs alone, in a savepoint when the
   * group has several. Returns each step's result or its own error; an error that concerns the
   * module or the whole transaction (a module fault, a mismatch, COMMIT, the ring append) is
   * every step's, and nothing of the group is released. When a side-by-side part's rows cannot
   * be written, nothing of the group was committed: it runs again, one step at a time, so the
   * step whose rows fail fails alone.
   */
  private async runGroup(engine: PsdEngine, steps: AnyStep[]): Promise<GroupRun> {
    try {
      return await this.runGroupOnce(engine, steps, false);
    } catch (e) {
      if (!(e instanceof SideBySideWriteFailed)) throw e;
      return this.runGroupOnce(engine, steps, true);
    }
  }

  private async runGroupOnce(engine: PsdEngine, steps: AnyStep[], oneByOne: boolean): Promise<GroupRun> {
    if (this.shardLost) throw vbiError('SHARD_LOST', this.shardLost);
    const mapLost = this.opts.mapLease?.lost;
    if (mapLost) throw vbiError('NO_MODULE', `the meter map lease is lost (${mapLost}); commands wait until it is taken again`);
    const lease = this.opts.leases?.get(engine);
    if (lease?.lost) throw vbiError('MODULE_NOT_READY', `module ${engine.hsm.serial}: ${lease.lost}`);
    const outcomes: Outcome[] = new Array(steps.length);
    // `last`: the step's last record (the master PSD's, when the step moved it)
    const done: Array<{ step: AnyStep; out: StepResult<unknown, unknown>; last: PreparedCommand<unknown> }> = [];
    const trx = await this.db.transaction();
    try {
      for (const part of oneByOne ? steps.map((_s, i) => [i]) : parts(steps)) {
        if (part.length > 1) {
          await this.runSideBySide(engine, trx, part.map((i) => steps[i]), (k, o, last) => {
            outcomes[part[k]] = o;
            if (o.out && last) done.push({ step: steps[part[k]], out: o.out, last });
          });
          continue;
        }
        const i = part[0];
        const step = steps[i];
        if (steps.length === 1) {
          const ran = await this.runStep(engine, trx, step);
          done.push({ step, ...ran });
          outcomes[i] = { out: ran.out };
          continue;
        }
        let prepared: PreparedCommand<unknown> | null = null;
        const sp = await trx.transaction();
        try {
          const ran = await this.runStep(engine, sp, step, (p) => { prepared = p; });
          await sp.commit();
          done.push({ step, ...ran });
          outcomes[i] = { out: ran.out };
        } catch (e) {
          engine.abort(prepared);
          outcomes[i] = { error: await ownError(sp, e) };
        }
      }
      for (const d of done) await this.opts.faults?.beforeCommit?.({ meterId: d.step.meterId, type: d.step.type });
      if (done.length > 0) {
        // the group before this one (pipelined) must be in the ring first: never two groups committed but not appended
        await engine.settleAppend();
        await commitOrThrow(trx);
      } else await trx.rollback();
    } catch (e) {
      // Not committed, or not known to be: the records stay out of the ring. If COMMIT did
      // happen, the database presents the group's records next time: roll forward.
      engine.abortGroup();
      if (isVbiError(e, 'SHARD_LOST')) this.shardLost ??= e.message;
      if (!trx.isCompleted()) await trx.rollback().catch(() => undefined);
      throw e;
    }
    if (done.length === 0) return { outcomes, appended: Promise.resolve() };
    try {
      for (const d of done) await this.opts.faults?.afterCommit?.({ meterId: d.step.meterId, type: d.step.type });
    } catch (e) {
      engine.abortGroup(); // a simulated crash between COMMIT and the ring append
      throw e;
    }
    // the anchor moves on now; the ring append runs on without the map lock (drain)
    engine.committed(done[done.length - 1].last);
    const appended = engine.appendCommitted().then(() => {
      this.commits.groups++;
      this.commits.commands += done.length;
      this.commits.largest = Math.max(this.commits.largest, done.length);
    }, (e: unknown) => {
      // Committed but not in the ring: nothing is released, and no command of the group may run
      // again on another module. The module rolls forward when it is reconciled.
      this.takeOut(engine, `ring append failed: ${(e as Error).message}`);
      throw vbiError('CHECKPOINT_APPEND_FAILED', `module ${engine.hsm.serial}: ${(e as Error).message}`, { moduleSerial: engine.hsm.serial });
    });
    appended.catch(() => undefined); // observed by whoever releases the group
    return { outcomes, appended };
  }

  /**
   * One step of a group, in `trx` (the group's transaction or the step's savepoint); `onPrepared`
   * learns the module's (first) record at once. Returns the step's result and its last record.
   */
  private async runStep(engine: PsdEngine, trx: Knex.Transaction, step: AnyStep, onPrepared?: (p: PreparedCommand<unknown>) => void): Promise<{ out: StepResult<unknown, unknown>; last: PreparedCommand<unknown> }> {
    if (step.master) return this.runMaster(engine, trx, step.master, step, onPrepared);
    // the meter row and its newest journal record, one round trip
    const meter = (await trx.raw(
      `SELECT m.*, (SELECT j.checkpoint FROM journal j WHERE j.meter_id = m.meter_id ORDER BY j.journal_id DESC LIMIT 1) AS newest_checkpoint
         FROM meters m WHERE m.meter_id = ? FOR UPDATE OF m`, [step.meterId])).rows[0];
    checkMeterRow(step, meter);
    // Lock order everywhere: meter, then module and map. Commands of this process already run
    // one at a time (map lock); the row locks keep out writers from outside the engine.
    const locked = await lockModuleAndMap(trx, { moduleSerial: engine.hsm.serial, slot: meter ? meter.slot : null });
    const moduleRow = locked.moduleRow ?? (await this.insertModuleRow(engine, trx));
    const input = await step.before?.(trx);
    const prepared = await engine.prepare(commandOf(step, meter, moduleRow, locked.view, input));
    onPrepared?.(prepared);
    const out = await this.writeStep(engine, trx, step, prepared, input, meter, meter ? locked.row.nextSlot : locked.view.slot + 1);
    const movement = step.pool?.(out);
    if (!movement || movement.amount === 0) return { out, last: prepared };
    const { last } = await this.runMaster(engine, trx, movement, {
      meterId: MASTER_PSD_ID, type: 'pool-transfer',
      details: () => ({ kind: movement.kind, amount: movement.amount, cause: { meterId: step.meterId, type: step.type, seq: out.record.seq } }),
    });
    return { out, last };
  }

  /**
   * The master PSD's command, in `trx` after whatever the step wrote (docs/ledger.md, "The master
   * PSD"): the pool row (its sealed package, the register copies) and the master PSD's newest
   * journal record are read and locked, then the module and map rows with the proof for the
   * master PSD's reserved slot; the module checks the package like a meter's (MAC, map proof,
   * newest journal record) and runs the movement; the package, the register copies, the journal
   * row, the map path and the module row are written. A pool row never sealed (a database from
   * before the master PSD) seals it here from its register columns, in the same record — only
   * while the reserved slot is still empty in the map the rings hold.
   */
  private async runMaster(engine: PsdEngine, trx: Knex.Transaction, movement: PoolMovement, step: AnyStep,
    onPrepared?: (p: PreparedCommand<unknown>) => void): Promise<{ out: StepResult<unknown, unknown>; last: PreparedCommand<unknown> }> {
    const pool = (await trx.raw(
      `SELECT p.package, p.purchased, p.available, p.refunds_paid,
              (SELECT j.checkpoint FROM journal j WHERE j.meter_id = ? ORDER BY j.journal_id DESC LIMIT 1) AS newest_checkpoint
         FROM pool p WHERE p.pool_id = 1 FOR UPDATE OF p`, [MASTER_PSD_ID])).rows[0];
    if (!pool) throw vbiError('PACKAGE_STALE', "the pool row (the master PSD) is missing from the database", { meterId: MASTER_PSD_ID });
    const locked = await lockModuleAndMap(trx, { moduleSerial: engine.hsm.serial, slot: MASTER_PSD_SLOT });
    const moduleRow = locked.moduleRow ?? (await this.insertModuleRow(engine, trx));
    const baseline = { purchased: Number(pool.purchased), available: Number(pool.available), refundsPaid: Number(pool.refunds_paid) };
    const out = await engine.prepare<MasterRegisters>({
      meterId: MASTER_PSD_ID, sealedPackage: pool.package ?? null, dbCheckpoint: moduleRow.checkpoint ?? null, map: locked.view,
      meterCheckpoint: pool.package ? (pool.newest_checkpoint ?? null) : undefined,
      execute: masterPsdCommand(movement, baseline),
    });
    onPrepared?.(out);
    const rows = await commandRows(engine, step, out, undefined);
    await storeCommands(trx, { moduleSerial: engine.hsm.serial, nextSlot: locked.row.nextSlot, creates: false, master: true, commands: [rows], ownerEpoch: this.ownerEpoch });
    return { out: { ...out, stored: await step.after?.(trx, out, rows.at, undefined) }, last: out };
  }

  /** A missing row is a database without a checkpoint for this module: the module decides whether that is a new module (empty ring) or a deleted row (inhibit). */
  private async insertModuleRow(engine: PsdEngine, trx: Knex.Transaction): Promise<{ checkpoint: null }> {
    await trx('modules').insert({ module_serial: engine.hsm.serial, token_label: engine.hsm.tokenLabel });
    return { checkpoint: null };
  }

  /**
   * Steps of different meters that may run side by side (Step.sideBySide), in the group's
   * transaction: their rows are read and locked together (meters in id order, then module and
   * map) and each `before` runs; the module runs them all at once, each against the map as it
   * stands (PsdEngine.run, at its place in the group); then in order each joins the group
   * (PsdEngine.chain, which runs it again if one before it failed); then all their rows are
   * written, with no savepoint each (SideBySideWriteFailed if any fails). A refusal is the
   * step's own; what concerns the module fails the group.
   */
  private async runSideBySide(engine: PsdEngine, trx: Knex.Transaction, steps: AnyStep[],
    settle: (k: number, o: Outcome, last?: PreparedCommand<unknown>) => void): Promise<void> {
    const meters = new Map<string, MeterRow>();
    for (const m of (await trx.raw(
      `SELECT m.*, (SELECT j.checkpoint FROM journal j WHERE j.meter_id = m.meter_id ORDER BY j.journal_id DESC LIMIT 1) AS newest_checkpoint
         FROM meters m WHERE m.meter_id = ANY(?::text[]) ORDER BY m.meter_id FOR UPDATE OF m`, [steps.map((s) => s.meterId)])).rows as MeterRow[]) {
      meters.set(m.meter_id, m);
    }
    const ready: Array<{ k: number; meter: MeterRow; input: unknown; cmd: PsdCommand<unknown> }> = [];
    const found = steps.map((step, k) => {
      const meter = meters.get(step.meterId);
      try {
        checkMeterRow(step, meter);
        return meter!;
      } catch (e) {
        settle(k, { error: e });
        return null;
      }
    });
    const locked = await lockModuleAndMapFor(trx, { moduleSerial: engine.hsm.serial, slots: found.flatMap((m) => (m ? [m.slot] : [])) });
    const moduleRow = locked.moduleRow ?? (await this.insertModuleRow(engine, trx));
    let v = 0;
    for (const [k, meter] of found.entries()) {
      if (!meter) continue;
      const view = locked.views[v++];
      let input: unknown;
      try {
        // reads and locks only (Step.sideBySide): a refusal changes nothing to roll back
        input = await steps[k].before?.(trx);
      } catch (e) {
        if (!(e instanceof VbiError)) throw e;
        settle(k, { error: e });
        continue;
      }
      ready.push({ k, meter, input, cmd: commandOf(steps[k], meter, moduleRow, view, input) });
    }
    const runs = await settleAll(ready.map((r, place) => () => engine.run(r.cmd, place)), engine.hsm.scopeLimit);
    // what concerns the module fails the whole group, once every run has finished
    for (const r of runs) if (r.status === 'rejected' && concernsModule(r.reason)) throw r.reason;
    // in order, each joins the group (a refusal here is the step's own: nothing of it was chained)
    const chained: Array<{ k: number; input: unknown; out: PreparedCommand<unknown> }> = [];
    for (const [i, r] of ready.entries()) {
      const run = runs[i];
      if (run.status === 'rejected') {
        settle(r.k, { error: run.reason });
        continue;
      }
      try {
        chained.push({ k: r.k, input: r.input, out: await engine.chain(run.value) });
      } catch (e) {
        if (concernsModule(e)) throw e;
        settle(r.k, { error: e });
      }
    }
    // their rows in one statement, then each step's own; no savepoint each: if any write fails,
    // the transaction is lost and the whole group runs again one step at a time
    const results: Array<StepResult<unknown, unknown>> = [];
    try {
      const rows = await Promise.all(chained.map((c) => commandRows(engine, steps[c.k], c.out, c.input)));
      await storeCommands(trx, { moduleSerial: engine.hsm.serial, nextSlot: locked.row.nextSlot, creates: false, commands: rows, ownerEpoch: this.ownerEpoch });
      for (const [i, c] of chained.entries()) results.push({ ...c.out, stored: await steps[c.k].after?.(trx, c.out, rows[i].at, c.input) });
    } catch (e) {
      if (isVbiError(e, 'SHARD_LOST')) throw e; // one at a time would be fenced out the same way
      throw new SideBySideWriteFailed(e);
    }
    for (const [i, c] of chained.entries()) settle(c.k, { out: results[i] }, c.out);
  }

  /** The rows of a prepared step: package, module checkpoint, map path and journal in one statement, then the step's own. */
  private async writeStep(engine: PsdEngine, trx: Knex.Transaction, step: AnyStep, out: PreparedCommand<unknown>, input: unknown,
    meter: MeterRow | undefined, nextSlot: number): Promise<StepResult<unknown, unknown>> {
    const rows = await commandRows(engine, step, out, input);
    await storeCommands(trx, { moduleSerial: engine.hsm.serial, nextSlot, creates: !meter, commands: [rows], ownerEpoch: this.ownerEpoch });
    return { ...out, stored: await step.after?.(trx, out, rows.at, input) };
  }
}

/** A step's journal payload sealed by the module, with the rest of its rows (storeCommands). */
async function commandRows(engine: PsdEngine, step: AnyStep, out: PreparedCommand<unknown>, input: unknown): Promise<CommandRows> {
  const sealed = await engine.sealJournal(out, step.details(out, input));
  return {
    out, at: new Date(out.record.time), payload: sealed.payload, moduleMac: sealed.moduleMac,
    receipt: step.receipt ? JSON.stringify(step.receipt(out) ?? null) : null,
  };
}

/** A side-by-side part's rows could not be written: the group runs again one step at a time (docs/ledger.md). */
class SideBySideWriteFailed extends Error {
  constructor(cause: unknown) {
    super(`a side-by-side write failed: ${(cause as Error)?.message ?? cause}`, { cause });
  }
}

/** A meter row as the command runner reads it, with its newest journal record. */
interface MeterRow { meter_id: string; slot: number; package: Buffer; newest_checkpoint: Buffer | null; [column: string]: unknown }

function checkMeterRow(step: Pick<AnyStep, 'meterId' | 'creates'>, meter: MeterRow | undefined): void {
  // the master PSD is no meter: no meter command reaches it, and no meter takes its id
  if (step.meterId === MASTER_PSD_ID) throw vbiError(step.creates ? 'BAD_REQUEST' : 'UNKNOWN_METER', `${MASTER_PSD_ID} is the vendor's master PSD, not a meter`);
  if (step.creates && meter) throw vbiError('BAD_REQUEST', `meter ${step.meterId} exists`);
  if (!step.creates && !meter) throw vbiError('UNKNOWN_METER', `no meter ${step.meterId}`);
  if (meter && (meter.slot === null || meter.slot === undefined)) throw vbiError('PACKAGE_STALE', `meter ${step.meterId} has no slot in the meter map`);
}

function commandOf(step: AnyStep, meter: MeterRow | undefined, moduleRow: { checkpoint: Buffer | null }, map: MeterMapView, input: unknown): PsdCommand<unknown> {
  const execute = step.execute;
  if (!execute) throw new Error(`step ${step.type} of meter ${step.meterId} has no command`);
  return {
    meterId: step.meterId,
    sealedPackage: meter?.package ?? null,
    dbCheckpoint: moduleRow.checkpoint ?? null,
    map,
    meterCheckpoint: meter ? (meter.newest_checkpoint ?? null) : undefined,
    execute: (pkg, ctx) => execute(pkg, ctx, input),
  };
}

/** An error that concerns the module or the group's transaction, not one command: the whole group fails. */
function concernsModule(e: unknown): boolean {
  return e instanceof VbiError && (MODULE_FAULTS.includes(e.code) || ['CHECKPOINT_MISMATCH', 'MAP_AHEAD', 'SHARD_LOST'].includes(e.code));
}

/**
 * A step of a group failed in its savepoint: a refusal or a failed statement is the step's own
 * once the savepoint rolls back (returned); what concerns the module, or a savepoint that cannot
 * be rolled back (the transaction is lost), fails the whole group (thrown).
 */
async function ownError(sp: Knex.Transaction, e: unknown): Promise<unknown> {
  if (concernsModule(e)) throw e;
  try {
    if (!sp.isCompleted()) await sp.rollback();
  } catch {
    throw e;
  }
  return e;
}

/** Runs the tasks at most `limit` at a time (each command holds a key scope while it runs); settles like Promise.allSettled. */
async function settleAll<T>(tasks: Array<() => Promise<T>>, limit: number): Promise<PromiseSettledResult<T>[]> {
  const out: PromiseSettledResult<T>[] = new Array(tasks.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < tasks.length; i = next++) {
      try {
        out[i] = { status: 'fulfilled', value: await tasks[i]() };
      } catch (reason) {
        out[i] = { status: 'rejected', reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, tasks.length)) }, worker));
  return out;
}

/**
 * The group's steps as parts run one after the other: a run of side-by-side steps of different
 * meters is one part, any other step a part alone (indexes into `steps`).
 */
function parts(steps: AnyStep[]): number[][] {
  const out: number[][] = [];
  let run: number[] = [];
  const meters = new Set<string>();
  const close = () => {
    if (run.length) out.push(run);
    run = [];
    meters.clear();
  };
  for (const [i, s] of steps.entries()) {
    // a step that moves the master PSD writes a second record after its own: never side by side
    if (!s.sideBySide || s.pool) {
      close();
      out.push([i]);
      continue;
    }
    if (meters.has(s.meterId)) close();
    run.push(i);
    meters.add(s.meterId);
  }
  close();
  return out;
}

type Outcome = { out: StepResult<unknown, unknown>; error?: undefined } | { error: unknown; out?: undefined };

/** A committed group: each step's outcome, released only once `appended` (the group's record in the ring) resolves. */
interface GroupRun {
  outcomes: Outcome[];
  appended: Promise<void>;
}

function unwrap(o: Outcome): StepResult<unknown, unknown> {
  if ('error' in o && o.error !== undefined) throw o.error;
  return o.out!;
}
