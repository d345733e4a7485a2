import type { Knex } from 'knex';
import { vbiError, VbiError } from '@vbi/core/errors';
import { GROUP_MAX, PsdEngine } from '../module/psd-engine';
import type { Lease } from './module-lease';
import type { ShardOwnership } from './shard-ownership';
import { moduleCheckpointsAfter } from '../db/repositories/journal';
import { moduleCheckpoint, setModuleInRotation } from '../db/repositories/modules';

/**
 * The module rotation of one process (docs/ledger.md): which modules a command may go to, the
 * ones taken out (an inhibited or failed module, a lost lease) and why, the monitor's pass that
 * puts them back, and the reconcile of every ring with its database row.
 */
export class ModuleRotation {
  private readonly inFlight = new Map<PsdEngine, number>();
  private readonly outOfRotation = new Map<PsdEngine, string>();
  private checking: Promise<string[]> | undefined;

  constructor(private readonly opts: { db: Knex; engines: PsdEngine[]; leases?: Map<PsdEngine, Lease>; mapLease?: Lease; shard: ShardOwnership }) {
    for (const e of opts.engines) this.inFlight.set(e, 0);
  }

  private get db(): Knex {
    return this.opts.db;
  }

  /** A command goes to `e` (counted while it is in flight: pick prefers the least busy module). */
  enter(e: PsdEngine): void {
    this.inFlight.set(e, (this.inFlight.get(e) ?? 0) + 1);
  }

  leave(e: PsdEngine): void {
    this.inFlight.set(e, (this.inFlight.get(e) ?? 1) - 1);
  }

  /** An officer reinstated `e` (packages/server/src/ledger/reinstatement.ts): it serves again. */
  putBack(e: PsdEngine): void {
    this.outOfRotation.delete(e);
  }

  /**
   * The modules a command may go to now: not taken out of the rotation, lease held, and serving
   * (not inhibited, not in Error). The module directory (GET /v1/modules) lists only these, so a
   * client moving to another module is not sent to one the ledger would refuse.
   */
  serving(): PsdEngine[] {
    if (this.opts.shard.lost) return [];
    return this.opts.engines.filter((e) => !this.outOfRotation.has(e) && !this.opts.leases?.get(e)?.lost && ['Idle', 'User'].includes(e.status().state));
  }

  /** Every module of this process: in rotation or taken out by it, and why. */
  rotation(): Array<{ serial: string; label: string; inRotation: boolean; reason: string | null }> {
    return this.opts.engines.map((e) => ({
      serial: e.hsm.serial, label: e.hsm.tokenLabel,
      inRotation: !this.outOfRotation.has(e), reason: this.outOfRotation.get(e) ?? null,
    }));
  }

  /**
   * The module for the next command: one whose next group is forming (commands waiting, room
   * left) takes it — all modules of a process commit one group at a time (the map lock), so
   * splitting a forming group over two modules would only make both smaller; otherwise the
   * module with the fewest commands in flight.
   */
  pick(tried: Set<PsdEngine>, waiting: (e: PsdEngine) => number, groupMax: number): PsdEngine {
    let best: PsdEngine | undefined;
    let forming: PsdEngine | undefined;
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
      if (waiting(e) > 0 && waiting(e) < groupMax && (!forming || waiting(e) > waiting(forming))) forming = e;
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
      await this.opts.shard.claim(this.db);
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
        const row = await moduleCheckpoint(this.db, e.hsm.serial);
        await e.reconcile(row?.checkpoint ?? null, this.journalRecords(e));
      } catch (err) {
        if (err instanceof VbiError) this.outOfRotation.set(e, `${err.code}: ${err.message}`);
        continue;
      }
      this.outOfRotation.delete(e);
      await setModuleInRotation(this.db, e.hsm.serial, true, null).catch(() => undefined);
      back.push(e.hsm.serial);
    }
    return back;
  }

  takeOut(e: PsdEngine, why: string): void {
    this.outOfRotation.set(e, why);
    void setModuleInRotation(this.db, e.hsm.serial, false, why.slice(0, 500)).catch(() => undefined);
  }

  /**
   * Brings every serving module's ring in step with its database row (PsdEngine.reconcile),
   * under the map lock; a module that finds a rollback or an edit is inhibited and leaves the
   * rotation.
   */
  async reconcileAll(): Promise<void> {
    const engines = this.opts.engines;
    if (engines.length === 0) return;
    await engines[0].exclusive(async () => {
      for (const e of engines) {
        const st = e.status().state;
        if (st !== 'Idle' && st !== 'User') continue;
        const row = await moduleCheckpoint(this.db, e.hsm.serial);
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
    return (seq) => moduleCheckpointsAfter(this.db, e.hsm.serial, seq, GROUP_MAX);
  }
}
