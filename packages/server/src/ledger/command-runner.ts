// Over 300 lines: the queue per module and run()'s retry rules are one loop.
import type { Knex } from 'knex';
import { vbiError, VbiError } from '@vbi/core/errors';
import { GROUP_MAX, PsdEngine } from '../module/psd-engine';
import { METER_ID_PATTERN, PsdPackage } from '@vbi/core/psd/psd-package';
import type { Lease } from './module-lease';
import { readMapRow } from './pg-meter-map';
import { reinstateModule } from './reinstatement';
import type { Approval } from './officer-approval';
import type { AuditRecord } from '../module/audit';
import { GroupRun, GroupRunner, unwrap } from './group-runner';
import { ModuleRotation } from './module-rotation';
import { ShardOwnership } from './shard-ownership';
import { AnyStep, MODULE_FAULTS, Step, StepResult } from './step';
import { meterPackage } from '../db/repositories/meters';
import { ensureModuleRow } from '../db/repositories/modules';

export interface LedgerOptions {
  db: Knex;
  engines: PsdEngine[];
  /** Each module's lease (packages/server/src/ledger/module-lease.ts); a module whose lease is lost leaves the rotation. */
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
 * (GroupRunner.runSideBySide). Then one COMMIT; the module appends the
 * group's last record to its ring; only then are the results returned to the callers. A command
 * that fails alone (its savepoint rolled back) leaves the others' results as they are. A
 * checkpoint or map mismatch reconciles every module (roll forward, or inhibit) and retries once;
 * an inhibited or failed module leaves the rotation; with none left, NO_MODULE.
 *
 * A group forms only from commands that arrive while the module is busy: a command on an idle
 * module goes alone at once, with no added wait. No database connection is held while waiting.
 */
export class CommandRunner {
  private readonly queues = new Map<PsdEngine, Queued[]>();
  private readonly draining = new Set<PsdEngine>();
  private readonly groupMax: number;
  private readonly shard = new ShardOwnership();
  private readonly rotator: ModuleRotation;
  private readonly runner: GroupRunner;

  constructor(protected readonly opts: LedgerOptions) {
    this.groupMax = Math.max(1, Math.min(GROUP_MAX / 2, opts.groupMax ?? 32));
    this.rotator = new ModuleRotation({ db: opts.db, engines: opts.engines, leases: opts.leases, mapLease: opts.mapLease, shard: this.shard });
    this.runner = new GroupRunner({ db: opts.db, rotation: this.rotator, shard: this.shard, mapLease: opts.mapLease, leases: opts.leases, faults: opts.faults });
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
    await this.rotator.reconcileAll();
  }

  /**
   * Takes the shard for this process, which holds its lease (docs/operations.md, "Several
   * processes, several tokens"): a new ownership epoch, required by every group's map write from
   * now on. A process that held the shard before can then commit nothing more (SHARD_LOST).
   */
  private claimShard(): Promise<void> {
    return this.shard.claim(this.db);
  }

  /** Why this process serves its shard no more (another took it over), or null. */
  lostShard(): string | null {
    return this.shard.lost;
  }

  /**
   * Officer reinstatement of one of this process's modules (packages/server/src/ledger/reinstatement.ts); the
   * module returns to the rotation. The ceremony CLI does the same with the service stopped.
   */
  async reinstate(req: { moduleSerial: string; officer: string; acceptCheckpoint: Buffer | null; approvals: Approval[] }): Promise<AuditRecord | undefined> {
    const engine = this.opts.engines.find((e) => e.hsm.serial === req.moduleSerial);
    if (!engine) throw vbiError('UNKNOWN_MODULE', `no module ${req.moduleSerial} in this service`);
    const audit = await reinstateModule({ db: this.db, engine, officer: req.officer, acceptCheckpoint: req.acceptCheckpoint, approvals: req.approvals });
    this.rotator.putBack(engine);
    return audit;
  }

  /** Makes sure every module has its row in the module table (no checkpoint yet for a new one). */
  async registerModules(): Promise<void> {
    for (const e of this.opts.engines) {
      if (!e.hsm.serial) continue;
      await ensureModuleRow(this.db, e.hsm.serial, e.hsm.tokenLabel);
    }
  }

  /** A healthy module for operations that change no package (signing a certification request). */
  anyModule(): PsdEngine['hsm'] {
    return this.pickModule(new Set()).hsm;
  }

  /**
   * A check that changes nothing on a meter's package as the database holds it, by a module in
   * rotation (PsdEngine.inspect): no dispatch, no checkpoint, no row locked. UNKNOWN_METER when
   * the meter has no row.
   */
  async inspect<T>(meterId: string, check: (pkg: PsdPackage, hsm: PsdEngine['hsm']) => Promise<T>): Promise<T> {
    const meter = await meterPackage(this.db, meterId);
    if (!meter) throw vbiError('UNKNOWN_METER', `no meter ${meterId}`);
    return this.pickModule(new Set()).inspect(meterId, meter.package, check);
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
    return this.rotator.serving().map((e) => e.hsm);
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
    await this.rotator.reconcileAll();
    if (!inRing()) throw vbiError('CHECKPOINT_APPEND_FAILED', `record ${seq} of module ${moduleSerial} is not in its ring: nothing is released`, { moduleSerial });
  }


  /** Groups committed and released since start, the commands in them, and the largest group. */
  commitStats(): { groups: number; commands: number; largest: number } {
    return this.runner.stats();
  }

  /** Every module of this process: in rotation or taken out by it, and why. */
  rotation(): Array<{ serial: string; label: string; inRotation: boolean; reason: string | null }> {
    return this.rotator.rotation();
  }

  /**
   * Runs one module command (see the class comment). Public for the other services built on the
   * engine (MeterGen store, the mailer protocol); callers validate input first.
   */
  async run<R, I = void, S = void>(step: Step<R, I, S>): Promise<StepResult<R, S>> {
    if (typeof step.meterId !== 'string' || !METER_ID_PATTERN.test(step.meterId)) throw vbiError('UNKNOWN_METER', 'no such meter');
    if (this.shard.lost) throw vbiError('SHARD_LOST', this.shard.lost);
    const named = step.moduleSerial !== undefined;
    const tried = new Set<PsdEngine>(named ? this.opts.engines.filter((e) => e.hsm.serial !== step.moduleSerial) : []);
    if (named && tried.size === this.opts.engines.length) throw vbiError('UNKNOWN_MODULE', `no module ${step.moduleSerial} in this service`);
    let reconciled = false;
    for (;;) {
      const engine = this.pickModule(tried);
      this.rotator.enter(engine);
      try {
        return await this.submit(engine, step as unknown as AnyStep) as StepResult<R, S>;
      } catch (e) {
        if (!(e instanceof VbiError)) throw e;
        if ((e.code === 'CHECKPOINT_MISMATCH' || e.code === 'MAP_AHEAD') && !reconciled) {
          reconciled = true;
          await this.rotator.reconcileAll();
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
          this.rotator.takeOut(engine, `${e.code}: ${e.message}`);
          tried.add(engine);
          continue;
        }
        if (e.code === 'HSM_ERROR') {
          const health = await engine.hsm.healthCheck();
          if (!health.ok) {
            this.rotator.takeOut(engine, `${e.code}: ${e.message}; health check failed: ${health.reason ?? ''}`);
            tried.add(engine);
            continue;
          }
        }
        throw e;
      } finally {
        this.rotator.leave(engine);
      }
    }
  }

  /** Queues `step` for `engine`'s next group; a module with no group running starts one at once. */
  private submit(engine: PsdEngine, step: AnyStep): Promise<StepResult<unknown, unknown>> {
    // a caller that already holds the map lock (re-entry) cannot wait for a group: it runs alone,
    // and never inside a group that is still open (a command's hook must not start another)
    if (engine.anchor.lock.heldHere()) {
      if (engine.groupOpen) throw new Error(`module ${engine.hsm.serial}: a command started inside an open group`);
      return this.runner.runGroup(engine, [step]).then(async (r) => {
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
          ran = await engine.exclusive(() => this.runner.runGroup(engine, group.map((g) => g.step)));
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

  /** One pass of the module monitor (ModuleRotation.checkModules). */
  checkModules(): Promise<string[]> {
    return this.rotator.checkModules();
  }

  /** The module for the next command (ModuleRotation.pick), knowing which modules have a group forming. */
  private pickModule(tried: Set<PsdEngine>): PsdEngine {
    return this.rotator.pick(tried, (e) => this.queues.get(e)?.length ?? 0, this.groupMax);
  }
}
