import { vbiError } from '../errors';
import { HsmModule, ModuleStatus } from '../hsm/hsm-module';
import { PsdPackage } from '../psd/psd-package';
import { openPackage, sealPackage } from './package-seal';
import {
  Checkpoint, ModuleTotals, TransactionType, ZERO_DIGEST, checkpointView, decodeCheckpoint, digestOf, encodeCheckpoint,
} from './checkpoint';
import { CheckpointRing, RingEntry } from './checkpoint-ring';
import { AuditRecord, AuditSink, signedAudit } from './audit';
import { Mutex } from './mutex';

const INHIBIT_LABEL = 'vbi.inhibit';

export interface CommandContext {
  hsm: HsmModule;
  /** The command's time stamp, ms since epoch (from the injected clock); also the package's and the checkpoint's. */
  now: number;
  /** Sequence number the command's checkpoint record will carry (for receipts). */
  checkpointSeq: number;
}

export interface CommandOutcome<R> {
  /** The package after the command; the engine bumps the record counter and seals it. */
  package: PsdPackage;
  type: TransactionType;
  amount: number;
  /** What the command adds to the module totals (mills). */
  totals?: Partial<ModuleTotals>;
  result: R;
}

export interface PsdCommand<R> {
  meterId: string;
  /** The sealed package as the database holds it; null only for a command that creates the meter. */
  sealedPackage: Buffer | null;
  /** This module's checkpoint as the database holds it; null when the database has none. */
  dbCheckpoint: Buffer | null;
  /**
   * The checkpoint record of the meter's newest journal row (any module). When given, the
   * package must be the one it names (meter and package digest): an older copy of the meter
   * row restored from outside the service is refused with PACKAGE_STALE. The transaction engine
   * always passes it; module-level tests without a journal leave it undefined.
   */
  meterCheckpoint?: Buffer | null;
  /** The command itself, run on the opened package after every check passed. */
  execute(pkg: PsdPackage | null, ctx: CommandContext): Promise<CommandOutcome<R>>;
}

export interface DispatchResult<R> {
  sealedPackage: Buffer;
  package: PsdPackage;
  /** The new checkpoint record to store as this module's row, in the same DB transaction. */
  checkpoint: Buffer;
  record: Checkpoint;
  result: R;
}

export interface InhibitInfo { reason: string; at: string; details: Record<string, unknown> }

export interface EngineStatus extends ModuleStatus {
  inhibited: InhibitInfo | null;
  ring: { size: number; entries: number; newestSeq: number | null; confirmedSeq: number };
}

export interface EngineOptions {
  hsm: HsmModule;
  ringSize: number;
  clock?: () => number;
  audit?: AuditSink;
}

/**
 * The PSD engine over one module ("sdx_dispatch", seed 001): every command presents the
 * database's checkpoint, which must equal the newest ring entry; the package is opened
 * (MAC, meter binding), the command runs, the package is re-sealed and a new checkpoint is
 * appended to the ring before anything is returned. Commands on one module run one at a time.
 */
export class PsdEngine {
  private readonly lock = new Mutex();
  private readonly ring: CheckpointRing;
  private inhibit: InhibitInfo | null = null;
  private readonly now: () => number;

  private constructor(private readonly opts: EngineOptions) {
    this.ring = new CheckpointRing(opts.hsm, opts.ringSize);
    this.now = opts.clock ?? Date.now;
  }

  static async start(opts: EngineOptions): Promise<PsdEngine> {
    const e = new PsdEngine(opts);
    const st = opts.hsm.status().state;
    if (st === 'Idle' || st === 'User') {
      await e.ring.load();
      const marker = await opts.hsm.listDataObjects(INHIBIT_LABEL);
      if (marker.length > 0) e.inhibit = JSON.parse(marker[0].value.toString('utf8')) as InhibitInfo;
    }
    return e;
  }

  get hsm(): HsmModule {
    return this.opts.hsm;
  }

  status(): EngineStatus {
    const s = this.opts.hsm.status();
    return {
      ...s,
      state: this.inhibit && s.state !== 'Error' ? 'Inhibited' : s.state,
      reason: this.inhibit && s.state !== 'Error' ? this.inhibit.reason : s.reason,
      inhibited: this.inhibit,
      ring: {
        size: this.ring.size,
        entries: this.ring.list().length,
        newestSeq: this.ring.newest()?.checkpoint.seq ?? null,
        confirmedSeq: this.ring.confirmedSeq(),
      },
    };
  }

  /** Ring entries oldest first (for status and tests). */
  ringEntries(): readonly RingEntry[] {
    return this.ring.list();
  }

  private assertServing(): void {
    if (this.inhibit) throw vbiError('MODULE_INHIBITED', `module ${this.hsm.serial} is inhibited: ${this.inhibit.reason}`);
  }

  dispatch<R>(cmd: PsdCommand<R>): Promise<DispatchResult<R>> {
    return this.lock.run(async () => {
      this.assertServing();
      const newest = this.ring.newest();
      if (!sameCheckpoint(cmd.dbCheckpoint, newest)) {
        throw vbiError('CHECKPOINT_MISMATCH', `module ${this.hsm.serial}: database checkpoint is not the newest ring entry`, {
          moduleSerial: this.hsm.serial,
          ringNewestSeq: newest?.checkpoint.seq ?? null,
        });
      }
      // The database has just presented `newest`: it is confirmed from here on.
      const presented = newest?.checkpoint.seq ?? 0;
      const now = this.now();
      let outcome: CommandOutcome<R>;
      try {
        // MAC first (an edited package is PACKAGE_MAC_INVALID), then freshness (an intact but
        // older package restored from outside is PACKAGE_STALE).
        const pkg = cmd.sealedPackage ? await openPackage(this.hsm, cmd.sealedPackage, cmd.meterId) : null;
        if (cmd.sealedPackage && cmd.meterCheckpoint !== undefined) await this.assertFresh(cmd.meterId, cmd.sealedPackage, cmd.meterCheckpoint);
        outcome = await cmd.execute(pkg, { hsm: this.hsm, now, checkpointSeq: this.ring.nextSeq() });
        if (outcome.package.meterId !== cmd.meterId) throw new Error('command changed the meter id');
      } catch (e) {
        // No successor will record the confirmation: persist it in a marker.
        if (presented > 0) await this.ring.confirm(presented);
        throw e;
      }
      const pkg: PsdPackage = { ...outcome.package, recordCounter: outcome.package.recordCounter + 1, lastTransactionTime: now };
      const sealedPackage = await sealPackage(this.hsm, pkg);
      const prev = newest?.checkpoint.totals ?? { reset: 0, printed: 0, refunded: 0 };
      const record: Checkpoint = {
        moduleSerial: this.hsm.serial,
        seq: this.ring.nextSeq(),
        meterId: pkg.meterId,
        type: outcome.type,
        amount: outcome.amount,
        ascendingRegister: pkg.ascendingRegister,
        descendingRegister: pkg.descendingRegister,
        time: now,
        totals: {
          reset: prev.reset + (outcome.totals?.reset ?? 0),
          printed: prev.printed + (outcome.totals?.printed ?? 0),
          refunded: prev.refunded + (outcome.totals?.refunded ?? 0),
        },
        packageDigest: digestOf(sealedPackage),
        prevDigest: newest ? digestOf(newest.bytes) : ZERO_DIGEST,
      };
      const checkpoint = await encodeCheckpoint(this.hsm, record);
      await this.ring.append({ checkpoint: record, bytes: checkpoint });
      return { sealedPackage, package: pkg, checkpoint, record, result: outcome.result };
    });
  }

  private async assertFresh(meterId: string, sealed: Buffer, meterCheckpoint: Buffer | null): Promise<void> {
    if (!meterCheckpoint) throw vbiError('PACKAGE_STALE', `meter ${meterId}: no journal record names its package`);
    const cp = await decodeCheckpoint(this.hsm, meterCheckpoint);
    if (cp.meterId !== meterId || !cp.packageDigest.equals(digestOf(sealed))) {
      throw vbiError('PACKAGE_STALE', `meter ${meterId}: the package is not the one its newest journal record (module ${cp.moduleSerial}, seq ${cp.seq}) names`);
    }
  }

  /**
   * "Auto-Recover module Checkpoint" (seed 001), stricter than the seed: the module rolls back
   * only its newest entry, and only if the database never confirmed it (a crash between the
   * ring update and the database COMMIT). A database that presents an older, confirmed entry
   * was rolled back; one that presents no ring entry was swapped or edited. Both inhibit the
   * module, persistently, and only an officer's reinstatement returns it to service.
   */
  autoRecover(dbCheckpoint: Buffer | null): Promise<{ recovered: boolean; audit: AuditRecord[] }> {
    return this.lock.run(async () => {
      this.assertServing();
      const entries = this.ring.list();
      const newest = this.ring.newest();
      if (sameCheckpoint(dbCheckpoint, newest)) return { recovered: false, audit: [] };

      const n = entries.length;
      const predecessorMatches =
        n >= 2 ? sameCheckpoint(dbCheckpoint, entries[n - 2])
          : n === 1 ? dbCheckpoint === null && entries[0].checkpoint.prevDigest.equals(ZERO_DIGEST)
            : false;
      const newestUnconfirmed = newest !== undefined && newest.checkpoint.seq > this.ring.confirmedSeq();

      if (predecessorMatches && newestUnconfirmed) {
        const discarded = await this.ring.discardNewest();
        const audit = [await signedAudit(this.hsm, {
          kind: 'checkpoint-discarded',
          at: new Date(this.now()).toISOString(),
          reason: 'auto-recovery: transaction never stored by the database (crash before COMMIT)',
          details: { checkpoint: checkpointView(discarded.checkpoint) },
        })];
        const back = this.ring.newest();
        if (back) await this.ring.confirm(back.checkpoint.seq);
        await this.emit(audit);
        return { recovered: true, audit };
      }

      const olderIx = entries.findIndex((e) => sameCheckpoint(dbCheckpoint, e));
      const reason = olderIx >= 0 || predecessorMatches || (await this.olderThanRing(dbCheckpoint))
        ? 'database rolled back past a confirmed checkpoint'
        : dbCheckpoint === null
          ? 'database has no checkpoint for this module but the ring is not empty'
          : 'database checkpoint matches no ring entry';
      const details: Record<string, unknown> = {
        dbCheckpointDigest: dbCheckpoint ? digestOf(dbCheckpoint).toString('hex') : null,
        ringSeqs: entries.map((e) => e.checkpoint.seq),
        confirmedSeq: this.ring.confirmedSeq(),
      };
      if (dbCheckpoint) {
        try {
          details.dbCheckpoint = checkpointView(await decodeCheckpoint(this.hsm, dbCheckpoint));
        } catch (e) {
          details.dbCheckpointError = (e as Error).message;
        }
      }
      const audit = [await this.inhibitModule(reason, details)];
      await this.emit(audit);
      throw vbiError('RECOVERY_FAILED', `module ${this.hsm.serial} inhibited: ${reason}`, { moduleSerial: this.hsm.serial, reason });
    });
  }

  /** A genuine record of this module, older than everything in the ring: a rollback too. */
  private async olderThanRing(db: Buffer | null): Promise<boolean> {
    const oldest = this.ring.list()[0];
    if (!db || !oldest) return false;
    try {
      const cp = await decodeCheckpoint(this.hsm, db);
      return cp.moduleSerial === this.hsm.serial && cp.seq < oldest.checkpoint.seq;
    } catch {
      return false;
    }
  }

  private async inhibitModule(reason: string, details: Record<string, unknown>): Promise<AuditRecord> {
    const info: InhibitInfo = { reason, at: new Date(this.now()).toISOString(), details };
    await this.hsm.createDataObject({ label: INHIBIT_LABEL, value: Buffer.from(JSON.stringify(info), 'utf8') });
    this.inhibit = info;
    return signedAudit(this.hsm, { kind: 'module-inhibited', at: info.at, reason, details });
  }

  /**
   * Officer procedure after disaster recovery (docs/operations.md): accept the database's
   * checkpoint for this module as the truth (its MAC must verify and it must be this module's),
   * make it the only ring entry, and lift the inhibition. `null` accepts a database without a
   * checkpoint row: the ring is emptied and sequence numbers continue after the old ones.
   */
  reinstate(req: { dbCheckpoint: Buffer | null; officer: string }): Promise<AuditRecord> {
    return this.lock.run(async () => {
      let accepted: RingEntry | null = null;
      if (req.dbCheckpoint) {
        const cp = await decodeCheckpoint(this.hsm, req.dbCheckpoint);
        if (cp.moduleSerial !== this.hsm.serial) {
          throw vbiError('CHECKPOINT_MISMATCH', `checkpoint belongs to module ${cp.moduleSerial}, not ${this.hsm.serial}`);
        }
        accepted = { checkpoint: cp, bytes: req.dbCheckpoint };
      }
      await this.ring.resetTo(accepted);
      // Lifted last: a crash before this line leaves the module inhibited, never half-reinstated.
      await this.hsm.destroyDataObject(INHIBIT_LABEL);
      const previous = this.inhibit;
      this.inhibit = null;
      const audit = await signedAudit(this.hsm, {
        kind: 'module-reinstated',
        at: new Date(this.now()).toISOString(),
        reason: `reinstated by officer ${req.officer}`,
        details: { accepted: accepted ? checkpointView(accepted.checkpoint) : null, previousInhibit: previous },
      });
      await this.emit([audit]);
      return audit;
    });
  }

  private async emit(records: AuditRecord[]): Promise<void> {
    if (!this.opts.audit) return;
    for (const r of records) await this.opts.audit(r);
  }
}

function sameCheckpoint(db: Buffer | null, entry: RingEntry | undefined): boolean {
  if (db === null || db.length === 0) return entry === undefined;
  return entry !== undefined && entry.bytes.equals(db);
}
