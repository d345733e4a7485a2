// Over 300 lines: the group's transaction is one piece: its steps alone, side by side and the master PSD's movement share the same locks, savepoints and failure rules.
import type { Knex } from 'knex';
import { isVbiError, vbiError, VbiError } from '@vbi/core/errors';
import { PsdEngine, PsdCommand, PreparedCommand } from '../module/psd-engine';
import { MeterMapView } from '../module/meter-map';
import { MASTER_PSD_ID, MASTER_PSD_SLOT, PoolMovement, masterPsdCommand } from '../module/commands/master-psd';
import type { MasterRegisters } from '../module/commands/master-psd';
import { commitOrThrow } from '../db/commit';
import type { Lease } from './module-lease';
import type { ModuleRotation } from './module-rotation';
import type { ShardOwnership } from './shard-ownership';
import { lockModuleAndMap, lockModuleAndMapFor } from './pg-meter-map';
import { CommandRows, storeCommands } from './store-command';
import { AnyStep, MODULE_FAULTS, StepResult } from './step';
import { lockMeterWithNewestCheckpoint, lockMetersWithNewestCheckpoint, type LockedMeterRow } from '../db/repositories/meters';
import { insertModuleRow as insertModuleTableRow } from '../db/repositories/modules';
import { lockPoolWithNewestCheckpoint } from '../db/repositories/pool';

/**
 * One group of commands on one module (docs/ledger.md, "Group commit"): one PostgreSQL
 * transaction, each step's rows read and locked, the module's run, the rows written, one COMMIT,
 * then the ring append that releases the results.
 */
export class GroupRunner {
  private readonly commits = { groups: 0, commands: 0, largest: 0 };

  constructor(private readonly opts: {
    db: Knex; rotation: ModuleRotation; shard: ShardOwnership; mapLease?: Lease; leases?: Map<PsdEngine, Lease>;
    faults?: {
      beforeCommit?: (info: { meterId: string; type: string }) => void | Promise<void>;
      afterCommit?: (info: { meterId: string; type: string }) => void | Promise<void>;
    };
  }) {}

  /** Groups committed and released since start, the commands in them, and the largest group. */
  stats(): { groups: number; commands: number; largest: number } {
    return { ...this.commits };
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
  async runGroup(engine: PsdEngine, steps: AnyStep[]): Promise<GroupRun> {
    try {
      return await this.runGroupOnce(engine, steps, false);
    } catch (e) {
      if (!(e instanceof SideBySideWriteFailed)) throw e;
      return this.runGroupOnce(engine, steps, true);
    }
  }

  private async runGroupOnce(engine: PsdEngine, steps: AnyStep[], oneByOne: boolean): Promise<GroupRun> {
    if (this.opts.shard.lost) throw vbiError('SHARD_LOST', this.opts.shard.lost);
    const mapLost = this.opts.mapLease?.lost;
    if (mapLost) throw vbiError('NO_MODULE', `the meter map lease is lost (${mapLost}); commands wait until it is taken again`);
    const lease = this.opts.leases?.get(engine);
    if (lease?.lost) throw vbiError('MODULE_NOT_READY', `module ${engine.hsm.serial}: ${lease.lost}`);
    const outcomes: Outcome[] = new Array(steps.length);
    // `last`: the step's last record (the master PSD's, when the step moved it)
    const done: Array<{ step: AnyStep; out: StepResult<unknown, unknown>; last: PreparedCommand<unknown> }> = [];
    const trx = await this.opts.db.transaction();
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
      if (isVbiError(e, 'SHARD_LOST')) this.opts.shard.lost ??= e.message;
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
      this.opts.rotation.takeOut(engine, `ring append failed: ${(e as Error).message}`);
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
    const meter = await lockMeterWithNewestCheckpoint(trx, step.meterId);
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
    const pool = await lockPoolWithNewestCheckpoint(trx, MASTER_PSD_ID);
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
    await storeCommands(trx, { moduleSerial: engine.hsm.serial, nextSlot: locked.row.nextSlot, creates: false, master: true, commands: [rows], ownerEpoch: this.opts.shard.epoch });
    return { out: { ...out, stored: await step.after?.(trx, out, rows.at, undefined) }, last: out };
  }

  /** A missing row is a database without a checkpoint for this module: the module decides whether that is a new module (empty ring) or a deleted row (inhibit). */
  private async insertModuleRow(engine: PsdEngine, trx: Knex.Transaction): Promise<{ checkpoint: null }> {
    await insertModuleTableRow(trx, engine.hsm.serial, engine.hsm.tokenLabel);
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
    for (const m of await lockMetersWithNewestCheckpoint(trx, steps.map((s) => s.meterId))) {
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
      await storeCommands(trx, { moduleSerial: engine.hsm.serial, nextSlot: locked.row.nextSlot, creates: false, commands: rows, ownerEpoch: this.opts.shard.epoch });
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
    await storeCommands(trx, { moduleSerial: engine.hsm.serial, nextSlot, creates: !meter, commands: [rows], ownerEpoch: this.opts.shard.epoch });
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
type MeterRow = LockedMeterRow;

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

export type Outcome = { out: StepResult<unknown, unknown>; error?: undefined } | { error: unknown; out?: undefined };

/** A committed group: each step's outcome, released only once `appended` (the group's record in the ring) resolves. */
export interface GroupRun {
  outcomes: Outcome[];
  appended: Promise<void>;
}

export function unwrap(o: Outcome): StepResult<unknown, unknown> {
  if ('error' in o && o.error !== undefined) throw o.error;
  return o.out!;
}
