// Over 300 lines: the engine's state (ring, open group, pending append, inhibit, known records) is one piece that every method reads or moves; the invariants between them (docs/checkpoint.md) read in one place.
import { isVbiError, vbiError } from '@vbi/core/errors';
import { HsmModule, ModuleStatus, KeyScope } from '../hsm/hsm-module';
import { PsdPackage } from '@vbi/core/psd/psd-package';
import { openPackage, sealPackage } from './package-seal';
import {
  Checkpoint, ModuleTotals, TransactionType, ZERO_DIGEST, checkpointView, decodeCheckpoint, digestOf, encodeCheckpoint, parseCheckpoint,
} from './checkpoint';
import { CheckpointRing, RingEntry } from './checkpoint-ring';
import { AuditEvent, AuditRecord, AuditSink } from './audit';
import { AuditChain, AuditStore } from './audit-chain';
import { EMPTY_LEAF, MapNode, MeterMapView, leafHash, pathNodes, rootOf, siblingPositions } from './meter-map';
import { MeterMapAnchor } from './map-anchor';
import { MASTER_PSD_ID, MASTER_PSD_SLOT } from './commands/master-psd';
import { sealJournalPayload } from './journal-seal';

const INHIBIT_LABEL = 'vbi.inhibit';

/**
 * Most commands in one group (one transaction, one ring append). Reconcile rolls a ring forward
 * over at most this many committed records.
 */
export const GROUP_MAX = 64;

/** How many digests of its own committed records an engine remembers (see assertCurrent). */
const KNOWN_RECORDS = 16_384;

export interface CommandContext {
  hsm: HsmModule;
  /** Keys unwrapped once for the whole command, when the command opened a key scope (operational()). */
  keys?: KeyScope;
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
   * The meter map as the database presents it, with the proof for the meter's slot (for a
   * command that creates the meter: the free slot it takes). The proof must lead from the
   * presented package to the root the modules' rings hold, or nothing runs (PACKAGE_STALE).
   */
  map: MeterMapView;
  /**
   * The checkpoint record of the meter's newest journal row (any module). When given, it must
   * name the presented package: a deleted or re-inserted journal row is refused too.
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
  /** Map nodes on the meter's path after the command (leaf to root), to store in the same DB transaction. */
  mapNodes: MapNode[];
  result: R;
}

/** A command run by the module and not yet in its ring: the caller stores it, COMMITs, then completes its group. */
export type PreparedCommand<R> = DispatchResult<R>;

/** A command checked and run by the module (PsdEngine.run), not yet chained into its group. */
export interface RunCommand<R> {
  cmd: PsdCommand<R>;
  /** The presented package, opened. */
  pkgIn: PsdPackage | null;
  outcome: CommandOutcome<R>;
  /** The package after the command (record counter and time stepped) and its sealed form. */
  pkg: PsdPackage;
  sealedPackage: Buffer;
  now: number;
  /** The checkpoint sequence number the command ran for (its receipts carry it). */
  seq: number;
}

export interface InhibitInfo { reason: string; at: string; details: Record<string, unknown> }

export interface EngineStatus extends ModuleStatus {
  inhibited: InhibitInfo | null;
  ring: { size: number; entries: number; newestSeq: number | null };
  map: { epoch: number; root: string };
}

export interface EngineOptions {
  hsm: HsmModule;
  ringSize: number;
  clock?: () => number;
  /** Where this module's signed audit chain is kept; without one the module records nothing. */
  audit?: AuditStore;
  /** Sees every audit record after it is stored (tests). */
  onAudit?: AuditSink;
  /** The process's meter map authority, shared by all its modules; a module alone gets its own. */
  anchor?: MeterMapAnchor;
}

/**
 * The PSD engine over one module ("sdx_dispatch", WO 01/29778), with commit-then-checkpoint:
 *  1. prepare: the database's checkpoint for this module must be the newest ring entry and its
 *     meter map the one the rings hold; the package is opened (MAC) and proved current against
 *     the map root; the command runs; the package is re-sealed and the next checkpoint record
 *     (new map root, epoch + 1) is MAC'd — but not put in the ring;
 *  2. the caller stores everything and COMMITs;
 *  3. complete: the record is appended to the ring; only then may the caller release a result.
 *     (In two halves for pipelined groups: committed() at COMMIT, appendCommitted() after the map
 *     lock is released; the next group's COMMIT waits for it, settleAppend.)
 * The ring can therefore never be legitimately ahead of the database (docs/checkpoint.md).
 *
 * Group commit: several commands may be prepared before the group is completed (one database
 * transaction, one COMMIT). Each gets its own record, chained to the one before it (sequence
 * + 1, previous digest, map epoch + 1); complete() appends only the group's last record to the
 * ring, which anchors the whole chain. Step 1 has two halves: run() (checks, the command, the
 * sealed package) changes nothing in the engine, so the commands of different meters run at
 * the same time; chain() then takes them into the group one by one, in order. Groups of all
 * modules of a process are formed one at a time, under the map anchor's lock.
 */
export class PsdEngine {
  private readonly ring: CheckpointRing;
  private inhibit: InhibitInfo | null = null;
  private inhibiting: Promise<void> | null = null;
  /** The open group: prepared, in order, not yet completed or aborted. */
  private pending: PreparedCommand<unknown>[] = [];
  /**
   * The last group committed whose last record is not in the ring yet (its append runs outside
   * the map lock, while the next group is prepared): the next command follows it, and the next
   * COMMIT waits for its append (settleAppend). `failed`: the append failed; nothing more is
   * committed on this module until a reconcile rolls the ring forward.
   */
  private appending: { entry: RingEntry; done: Promise<void>; failed?: Error } | null = null;
  /** The ring was read from the token (not when the module was in Error at start). */
  private loaded = false;
  /** Digests (hex) of records this engine MAC'd and committed, newest last; bounded. */
  private readonly known = new Set<string>();
  private readonly now: () => number;
  private readonly audit: AuditChain | null;
  readonly anchor: MeterMapAnchor;

  private constructor(private readonly opts: EngineOptions) {
    this.ring = new CheckpointRing(opts.hsm, opts.ringSize);
    this.now = opts.clock ?? Date.now;
    this.audit = opts.audit ? new AuditChain(opts.hsm, opts.audit, this.now) : null;
    this.anchor = opts.anchor ?? new MeterMapAnchor();
  }

  static async start(opts: EngineOptions): Promise<PsdEngine> {
    const e = new PsdEngine(opts);
    await e.load();
    return e;
  }

  /** Reads ring and inhibition from the token (once the module serves; a module in Error is read after restart()). */
  private async load(): Promise<void> {
    const st = this.opts.hsm.status().state;
    if (st !== 'Idle' && st !== 'User') return;
    await this.ring.load();
    const marker = await this.opts.hsm.listDataObjects(INHIBIT_LABEL);
    if (marker.length > 0) this.inhibit = JSON.parse(marker[0].value.toString('utf8')) as InhibitInfo;
    const newest = this.ring.newest();
    if (newest) this.anchor.observe(newest.checkpoint);
    await this.audit?.open();
    this.loaded = true;
  }

  /**
   * After the token failed: reconnect (find the token again, self-tests, keys) and read the ring
   * from the token again, under the map lock. The caller reconciles with the database next.
   */
  restart(): Promise<void> {
    return this.exclusive(async () => {
      this.pending = [];
      await this.settleAppendQuietly();
      await this.opts.hsm.reconnect();
      await this.load();
    });
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
      ring: { size: this.ring.size, entries: this.ring.list().length, newestSeq: this.ring.newest()?.checkpoint.seq ?? null },
      map: { epoch: this.anchor.epoch, root: this.anchor.root.toString('hex') },
    };
  }

  /** Ring entries oldest first (for status and tests). */
  ringEntries(): readonly RingEntry[] {
    return this.ring.list();
  }

  /** True while commands are prepared and their group is neither completed nor aborted. */
  get groupOpen(): boolean {
    return this.pending.length > 0;
  }

  /** Runs `fn` holding the process's map lock (re-entrant): the transaction engine wraps a whole command in it. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.anchor.lock.run(fn);
  }

  private assertServing(): void {
    if (this.inhibit) throw vbiError('MODULE_INHIBITED', `module ${this.hsm.serial} is inhibited: ${this.inhibit.reason}`);
  }

  /**
   * Step 1 of a command (see the class comment): run() then chain(). The caller must complete()
   * or abort() it. In an open group, the command follows the group's last prepared record: the
   * database (the group's transaction) must present that record and the map it made.
   */
  prepare<R>(cmd: PsdCommand<R>): Promise<PreparedCommand<R>> {
    return this.exclusive(async () => this.chain(await this.run(cmd)));
  }

  /**
   * Step 1a: the checks and the command itself, against the group as it stands (the open group's
   * last record, or the ring's newest): the database's checkpoint and map, the package's MAC and
   * its proof to the map root, the newest journal record; then the command runs and its package
   * is sealed. Nothing of the engine changes, so commands of different meters presented against
   * the same state may run at the same time (group commit, docs/ledger.md). `place` is the
   * command's place after the group's last record (0: next): its receipts carry that sequence
   * number, and chain() runs it again if it ends up elsewhere.
   */
  run<R>(cmd: PsdCommand<R>, place = 0): Promise<RunCommand<R>> {
    return this.exclusive(async () => {
      this.assertServing();
      if (!this.loaded) throw vbiError('MODULE_NOT_READY', `module ${this.hsm.serial}: ring not read (the module was not serving at start)`);
      if (this.pending.length + place >= GROUP_MAX) throw new Error(`module ${this.hsm.serial}: a group holds at most ${GROUP_MAX} commands`);
      // the master PSD's slot is its alone (packages/server/src/module/commands/master-psd.ts)
      if ((cmd.meterId === MASTER_PSD_ID) !== (cmd.map.slot === MASTER_PSD_SLOT)) {
        throw vbiError('PACKAGE_STALE', `${cmd.meterId} presented at slot ${cmd.map.slot}: slot ${MASTER_PSD_SLOT} is the master PSD's, and only its`, { meterId: cmd.meterId });
      }
      const { tail, newest, anchored, seq } = this.head();
      if (!sameCheckpoint(cmd.dbCheckpoint, newest)) {
        throw vbiError('CHECKPOINT_MISMATCH', `module ${this.hsm.serial}: database checkpoint is not the newest ring entry`, {
          moduleSerial: this.hsm.serial,
          ringNewestSeq: this.ring.newest()?.checkpoint.seq ?? null,
        });
      }
      if (tail) {
        // inside the group's own transaction nothing else writes the map: any difference is an edit
        if (cmd.map.epoch !== anchored.epoch || !cmd.map.root.equals(anchored.root)) {
          throw vbiError('CHECKPOINT_MISMATCH', `module ${this.hsm.serial}: the group's transaction presents another meter map`, { moduleSerial: this.hsm.serial });
        }
      } else await this.assertMapInStep(cmd.map);
      // MAC first (an edited package is PACKAGE_MAC_INVALID), then freshness (an intact but
      // older package, or another meter's, is PACKAGE_STALE).
      const pkgIn = cmd.sealedPackage ? await this.openPresented(cmd.meterId, cmd.sealedPackage) : null;
      await this.assertCurrent(cmd, anchored);
      return this.execute(cmd, pkgIn, seq + place);
    });
  }

  /** Runs the checked command for checkpoint record `seq` and seals its package. */
  private async execute<R>(cmd: PsdCommand<R>, pkgIn: PsdPackage | null, seq: number): Promise<RunCommand<R>> {
    const now = this.now();
    const outcome = await cmd.execute(pkgIn, { hsm: this.hsm, now, checkpointSeq: seq });
    if (outcome.package.meterId !== cmd.meterId) throw new Error('command changed the meter id');
    const pkg: PsdPackage = { ...outcome.package, recordCounter: outcome.package.recordCounter + 1, lastTransactionTime: now };
    return { cmd, pkgIn, outcome, pkg, sealedPackage: await sealPackage(this.hsm, pkg), now, seq };
  }

  /** Where the next command goes: after the open group's last record, or after the ring's newest. */
  private head(): { tail: PreparedCommand<unknown> | undefined; newest: RingEntry | undefined; anchored: { epoch: number; root: Buffer }; seq: number } {
    const tail = this.pending.at(-1);
    if (!tail && this.appending?.failed) {
      throw vbiError('MODULE_ERROR', `module ${this.hsm.serial}: the ring append of its last committed group failed (${this.appending.failed.message}); the module rolls its ring forward when it is reconciled`);
    }
    // after the open group's last record; else after the last committed group's (its append may still run); else the ring's newest
    const committed = this.appending?.entry;
    return {
      tail,
      newest: tail ? { checkpoint: tail.record, bytes: tail.checkpoint } : committed ?? this.ring.newest(),
      anchored: tail ? { epoch: tail.record.mapEpoch, root: tail.record.mapRoot } : { epoch: this.anchor.epoch, root: this.anchor.root },
      seq: tail ? tail.record.seq + 1 : committed ? committed.checkpoint.seq + 1 : this.ring.nextSeq(),
    };
  }

  /**
   * Step 1b: the run command joins the open group as its next record: its path in the meter map
   * is the presented proof with the nodes the group's earlier commands changed, which must still
   * lead from the presented package to the group's map root (else PACKAGE_STALE: another command
   * of the group changed this meter); the record (new map root, epoch + 1, chained to the one
   * before) is MAC'd. A command run for another place (a command before it failed) runs again
   * here for its real one, so its receipts name its own record.
   */
  chain<R>(r: RunCommand<R>): Promise<PreparedCommand<R>> {
    return this.exclusive(async () => {
      this.assertServing();
      if (this.pending.length >= GROUP_MAX) throw new Error(`module ${this.hsm.serial}: a group holds at most ${GROUP_MAX} commands`);
      const { newest, anchored, seq } = this.head();
      const cmd = r.cmd;
      const siblings = this.groupSiblings(cmd.map);
      const leafBefore = cmd.sealedPackage ? leafHash(cmd.map.slot, cmd.meterId, digestOf(cmd.sealedPackage)) : EMPTY_LEAF;
      if (!rootOf(cmd.map.slot, leafBefore, siblings).equals(anchored.root)) {
        throw vbiError('PACKAGE_STALE', `meter ${cmd.meterId}: another command of the group changed its slot ${cmd.map.slot}`, { meterId: cmd.meterId });
      }
      if (r.seq !== seq) r = await this.execute(cmd, r.pkgIn, seq);
      const { pkg, sealedPackage, outcome, now } = r;
      const mapNodes = pathNodes(cmd.map.slot, leafHash(cmd.map.slot, cmd.meterId, digestOf(sealedPackage)), siblings);
      const prev = newest?.checkpoint.totals ?? { reset: 0, printed: 0, refunded: 0 };
      const record: Checkpoint = {
        moduleSerial: this.hsm.serial,
        seq,
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
        slot: cmd.map.slot,
        mapEpoch: anchored.epoch + 1,
        mapRoot: mapNodes[mapNodes.length - 1].hash,
      };
      const checkpoint = await encodeCheckpoint(this.hsm, record);
      const prepared: PreparedCommand<R> = { sealedPackage, package: pkg, checkpoint, record, mapNodes, result: outcome.result };
      this.pending.push(prepared);
      return prepared;
    });
  }

  /** The proof's siblings with the nodes the open group's commands wrote in their place (newest wins). */
  private groupSiblings(view: MeterMapView): Buffer[] {
    if (this.pending.length === 0) return view.siblings;
    const written = new Map<string, Buffer>();
    for (const p of this.pending) for (const n of p.mapNodes) written.set(`${n.level}:${n.index}`, n.hash);
    return siblingPositions(view.slot).map((pos, i) => written.get(`${pos.level}:${pos.index}`) ?? view.siblings[i]);
  }

  /**
   * A check on a meter's package that changes nothing: the package as the database holds it is
   * opened (MAC-checked) and `check` runs on it with this module; no dispatch, no checkpoint, and
   * the package is not proved current (a check that leads to a change is made again inside the
   * dispatch that makes it). Heartbeats and the envelope check before a payment.
   */
  async inspect<T>(meterId: string, sealedPackage: Buffer, check: (pkg: PsdPackage, hsm: HsmModule) => Promise<T>): Promise<T> {
    return check(await openPackage(this.hsm, sealedPackage, meterId), this.hsm);
  }

  /**
   * The journal row's payload for a prepared command: `details` encrypted under the package
   * encryption key with the command's checkpoint record as AAD, and the module's MAC over both
   * (packages/server/src/module/journal-seal.ts).
   */
  sealJournal(out: PreparedCommand<unknown>, details: Record<string, unknown>): Promise<{ payload: Buffer; moduleMac: Buffer }> {
    return sealJournalPayload(this.hsm, out.checkpoint, details);
  }

  /**
   * Step 3: the database has COMMITted the open group, whose last command is `last`; the
   * group's last record enters the ring (its chain covers the others) and the map anchor moves
   * on. The anchor moves even if the token write fails: the database holds the records, and the
   * module rolls its ring forward at the next reconcile.
   */
  complete(last: PreparedCommand<unknown>): Promise<void> {
    return this.exclusive(async () => {
      await this.settleAppend();
      this.committed(last);
      await this.appendCommitted();
    });
  }

  /**
   * Step 3, in two halves, for pipelined groups (docs/ledger.md, "Group commit"). committed():
   * the database has COMMITted the open group, whose last command is `last`; the map anchor moves
   * on and the next command follows `last` — under the map lock, at once. appendCommitted(): the
   * record enters the ring; it may run outside the map lock while the next group is prepared,
   * whose COMMIT first waits for it (settleAppend). Only once it resolves may the group's results
   * be released. The anchor moves even if the token write fails: the database holds the records,
   * and the module rolls its ring forward at the next reconcile.
   */
  committed(last: PreparedCommand<unknown>): void {
    if (this.pending.at(-1) !== last) throw new Error(`module ${this.hsm.serial}: committed() of a command that is not the open group's last`);
    if (this.appending) throw new Error(`module ${this.hsm.serial}: a group committed while the one before it was still being appended`);
    for (const p of this.pending) this.remember(p.checkpoint);
    this.pending = [];
    this.anchor.observe(last.record);
    const entry = { checkpoint: last.record, bytes: last.checkpoint };
    const state: { entry: RingEntry; done: Promise<void>; failed?: Error } = { entry, done: Promise.resolve() };
    state.done = this.ring.append(entry).then(
      () => {
        if (this.appending === state) this.appending = null;
      },
      (e: unknown) => {
        state.failed = e instanceof Error ? e : new Error(String(e));
        throw e;
      },
    );
    state.done.catch(() => undefined); // observed by appendCommitted() and settleAppend()
    this.appending = state;
  }

  /** The last committed group's ring append (a no-op when it already landed); throws what it threw. */
  async appendCommitted(): Promise<void> {
    await this.appending?.done;
  }

  /**
   * Waits for the last committed group's ring append: a group commits only once the one before
   * it is in the ring, so at most one group is ever committed but not appended (what reconcile
   * rolls forward). A failed append is a module fault (MODULE_ERROR): the group must not commit.
   */
  async settleAppend(): Promise<void> {
    const a = this.appending;
    if (!a) return;
    try {
      await a.done;
    } catch (e) {
      throw vbiError('MODULE_ERROR', `module ${this.hsm.serial}: the ring append of its last committed group failed (${(e as Error).message})`);
    }
  }

  /** settleAppend(), a failure forgotten: the caller reads the ring and the database again next (restart, reconcile). */
  private async settleAppendQuietly(): Promise<void> {
    await this.appending?.done.catch(() => undefined);
    this.appending = null;
  }

  /**
   * The database did not COMMIT `p` (its savepoint was rolled back, or the transaction): `p` and
   * anything prepared after it are forgotten; the next reconcile tells what a lost COMMIT did.
   */
  abort(p: PreparedCommand<unknown> | null): void {
    const i = p ? this.pending.indexOf(p) : -1;
    if (i >= 0) this.pending.length = i;
  }

  /** The whole open group was not committed (or may not have been). */
  abortGroup(): void {
    this.pending = [];
  }

  /** A record this engine MAC'd and committed: its digest is kept (the newest KNOWN_RECORDS). */
  private remember(record: Buffer): void {
    this.known.add(digestOf(record).toString('hex'));
    if (this.known.size > KNOWN_RECORDS) this.known.delete(this.known.values().next().value as string);
  }

  /** prepare + complete, for stores without a database transaction (in-memory reference store, module tests). */
  dispatch<R>(cmd: PsdCommand<R>): Promise<DispatchResult<R>> {
    return this.exclusive(async () => {
      const p = await this.prepare(cmd);
      await this.complete(p);
      return p;
    });
  }

  private async assertMapInStep(view: MeterMapView): Promise<void> {
    if (this.anchor.matches(view)) return;
    if (view.epoch > this.anchor.epoch) {
      // legitimate only after a crash between COMMIT and ring append: the caller reconciles the
      // modules (roll forward) and retries; refuseMap() if that does not explain it
      throw vbiError('MAP_AHEAD', `meter map epoch ${view.epoch} in the database, ${this.anchor.epoch} in the rings`, {
        dbEpoch: view.epoch, ringEpoch: this.anchor.epoch,
      });
    }
    const reason = view.epoch < this.anchor.epoch
      ? 'database rolled back: its meter map is older than the one in the rings'
      : 'database meter map edited: same epoch, another root';
    await this.inhibitAndThrow(reason, {
      dbMap: { epoch: view.epoch, root: view.root.toString('hex') },
      ringMap: { epoch: this.anchor.epoch, root: this.anchor.root.toString('hex') },
    });
  }

  /** The database's map is still ahead after every module was reconciled: nothing of ours explains it. */
  refuseMap(view: { epoch: number; root: Buffer }): Promise<never> {
    return this.exclusive(() => this.inhibitAndThrow('database meter map is ahead of every ring: forged, or from another deployment', {
      dbMap: { epoch: view.epoch, root: view.root.toString('hex') },
      ringMap: { epoch: this.anchor.epoch, root: this.anchor.root.toString('hex') },
    }));
  }

  /** Opens the presented package; a package that fails its MAC or belongs to another meter is audited, then refused. */
  private async openPresented(meterId: string, sealed: Buffer): Promise<PsdPackage> {
    try {
      return await openPackage(this.hsm, sealed, meterId);
    } catch (e) {
      if (isVbiError(e) && ['PACKAGE_MAC_INVALID', 'PACKAGE_METER_MISMATCH', 'PACKAGE_MALFORMED'].includes(e.code)) {
        await this.emit({
          kind: 'package-invalid', at: new Date(this.now()).toISOString(), reason: `meter ${meterId}: ${e.code}: ${e.message}`,
          details: { meterId, code: e.code, packageDigest: digestOf(sealed).toString('hex') },
        });
      }
      throw e;
    }
  }

  /** The presented package is the meter's current one: map proof to the anchored root, and the newest journal record. */
  private async assertCurrent(cmd: PsdCommand<unknown>, anchored: { epoch: number; root: Buffer }): Promise<void> {
    const leaf = cmd.sealedPackage ? leafHash(cmd.map.slot, cmd.meterId, digestOf(cmd.sealedPackage)) : EMPTY_LEAF;
    const proved = pathNodes(cmd.map.slot, leaf, cmd.map.siblings)[cmd.map.siblings.length].hash.equals(anchored.root);
    let why: string | null = null;
    if (!proved) {
      why = cmd.sealedPackage
        ? `meter ${cmd.meterId}: the package is not the one the meter map (epoch ${anchored.epoch}) holds for slot ${cmd.map.slot}`
        : `meter ${cmd.meterId}: slot ${cmd.map.slot} of the meter map is not free`;
    } else if (cmd.sealedPackage && cmd.meterCheckpoint !== undefined) {
      if (!cmd.meterCheckpoint) why = `meter ${cmd.meterId}: no journal record names its package`;
      else {
        // a record this engine MAC'd and committed itself is recognised by its digest: its MAC
        // is not checked again in the token (its content is, below)
        const cp = this.known.has(digestOf(cmd.meterCheckpoint).toString('hex'))
          ? parseCheckpoint(cmd.meterCheckpoint).record
          : await decodeCheckpoint(this.hsm, cmd.meterCheckpoint);
        if (cp.meterId !== cmd.meterId || !cp.packageDigest.equals(digestOf(cmd.sealedPackage))) {
          why = `meter ${cmd.meterId}: the newest journal record (module ${cp.moduleSerial}, seq ${cp.seq}) names another package`;
        }
      }
    }
    if (!why) return;
    await this.emit({
      kind: 'package-stale', at: new Date(this.now()).toISOString(), reason: why,
      details: { meterId: cmd.meterId, slot: cmd.map.slot, mapEpoch: anchored.epoch },
    });
    throw vbiError('PACKAGE_STALE', why, { meterId: cmd.meterId });
  }

  /**
   * Brings the ring in step with the database's checkpoint row for this module:
   *  - the row is the ring's newest record → nothing to do;
   *  - the row ends a chain of at most GROUP_MAX MAC-valid records of this module that
   *    continues the newest (consecutive sequence numbers, each naming the previous one's digest,
   *    rising map epochs, the last at most the anchor's + the chain's length): the records
   *    before the row come from `committedAfter` (the journal's records of this module after a
   *    sequence number) → the database committed that group and the process died (or the token
   *    failed) before the ring append: the ring rolls forward to the row;
   *  - anything else — a ring ahead of the database, a row deleted, edited or from elsewhere, a
   *    chain with a record missing — is a rollback or an edit: the module is inhibited
   *    (RECOVERY_FAILED), persistently.
   */
  reconcile(dbCheckpoint: Buffer | null, committedAfter?: (seq: number) => Promise<Buffer[]>): Promise<'in-step' | 'rolled-forward'> {
    return this.exclusive(async () => {
      this.assertServing();
      if (!this.loaded) throw vbiError('MODULE_NOT_READY', `module ${this.hsm.serial}: ring not read (the module was not serving at start)`);
      // a group's append still running lands first; one that failed is what a roll forward mends
      await this.settleAppendQuietly();
      const newest = this.ring.newest();
      if (sameCheckpoint(dbCheckpoint, newest)) return 'in-step';
      let presented: Checkpoint | null = null;
      let decodeError: string | null = null;
      if (dbCheckpoint && dbCheckpoint.length > 0) {
        try {
          presented = await decodeCheckpoint(this.hsm, dbCheckpoint);
        } catch (e) {
          decodeError = (e as Error).message;
        }
      }
      const chain = presented && dbCheckpoint && presented.moduleSerial === this.hsm.serial && presented.seq > (newest?.checkpoint.seq ?? 0)
        ? await this.committedChain(presented, dbCheckpoint, newest, committedAfter) : null;
      if (presented && dbCheckpoint && chain) {
        this.anchor.observe(presented);
        await this.ring.append({ checkpoint: presented, bytes: dbCheckpoint });
        await this.emit({
          kind: 'checkpoint-rolled-forward', at: new Date(this.now()).toISOString(),
          reason: 'the database committed these records before the ring append (crash or token failure in between)',
          details: { checkpoint: checkpointView(presented), records: chain.map((c) => c.seq) },
        });
        return 'rolled-forward';
      }
      const newestSeq = newest?.checkpoint.seq ?? 0;
      const reason = !dbCheckpoint || dbCheckpoint.length === 0
        ? 'database has no checkpoint for this module but the ring is not empty (row deleted, or database swapped)'
        : presented && presented.moduleSerial === this.hsm.serial && presented.seq <= newestSeq
          ? `database rolled back: it presents checkpoint ${presented.seq}, the ring holds ${newestSeq}`
          : 'database checkpoint matches no ring entry and is not its successor (edited, swapped, or from another module)';
      const details: Record<string, unknown> = {
        dbCheckpointDigest: dbCheckpoint ? digestOf(dbCheckpoint).toString('hex') : null,
        ringSeqs: this.ring.list().map((e) => e.checkpoint.seq),
      };
      if (presented) details.dbCheckpoint = checkpointView(presented);
      // the evidence of what a rollback lost: ring records the database no longer has
      const ahead = this.ring.list().filter((e) => !presented || e.checkpoint.seq > presented.seq);
      if (ahead.length > 0) details.ringRecordsMissingFromDatabase = ahead.map((e) => checkpointView(e.checkpoint));
      if (decodeError) details.dbCheckpointError = decodeError;
      return this.inhibitAndThrow(reason, details);
    });
  }

  /**
   * The records from the ring's newest to the database's row, when they form the chain a
   * committed group leaves (see reconcile); null otherwise. Decoding checks each record's MAC.
   */
  private async committedChain(presented: Checkpoint, bytes: Buffer, newest: RingEntry | undefined,
    committedAfter?: (seq: number) => Promise<Buffer[]>): Promise<Checkpoint[] | null> {
    const from = this.ring.nextSeq();
    const count = presented.seq - from + 1;
    if (count < 1 || count > GROUP_MAX) return null;
    const chain: RingEntry[] = [];
    if (count > 1) {
      if (!committedAfter) return null;
      for (const b of await committedAfter(from - 1)) {
        if (b.equals(bytes) || chain.length === count - 1) break;
        try {
          chain.push({ checkpoint: await decodeCheckpoint(this.hsm, b), bytes: b });
        } catch {
          return null;
        }
      }
    }
    chain.push({ checkpoint: presented, bytes });
    let prev: RingEntry | undefined = newest;
    for (const [i, e] of chain.entries()) {
      const c = e.checkpoint;
      if (c.moduleSerial !== this.hsm.serial || c.seq !== from + i) return null;
      if (!c.prevDigest.equals(prev ? digestOf(prev.bytes) : ZERO_DIGEST)) return null;
      // made after the one before it (another module's records may come in between)
      if (c.mapEpoch <= (prev?.checkpoint.mapEpoch ?? 0)) return null;
      prev = e;
    }
    // not ahead of what the process has seen by more than this group (another module may have
    // gone on after it committed)
    if (presented.mapEpoch > this.anchor.epoch + chain.length) return null;
    return chain.map((e) => e.checkpoint);
  }

  private async inhibitAndThrow(reason: string, details: Record<string, unknown>): Promise<never> {
    if (!this.inhibit) {
      // commands running side by side (run()) may find the same rollback: one marker, one record
      this.inhibiting ??= (async () => {
        const info: InhibitInfo = { reason, at: new Date(this.now()).toISOString(), details };
        await this.hsm.createDataObject({ label: INHIBIT_LABEL, value: Buffer.from(JSON.stringify(info), 'utf8') });
        this.inhibit = info;
        await this.emit({ kind: 'module-inhibited', at: info.at, reason, details });
      })().finally(() => {
        this.inhibiting = null;
      });
      await this.inhibiting;
    }
    const why = this.inhibit?.reason ?? reason;
    throw vbiError('RECOVERY_FAILED', `module ${this.hsm.serial} inhibited: ${why}`, { moduleSerial: this.hsm.serial, reason: why });
  }

  /**
   * Officer reinstatement, step 1 (packages/server/src/ledger/reinstatement.ts): a `reinstate` record that
   * accepts the database's state — its checkpoint row for this module (or none) and its meter map
   * — chained to that row, with a map epoch above everything this module and the database have
   * seen. The caller stores it as the module row and the map row, COMMITs, then calls
   * completeReinstatement().
   */
  prepareReinstatement(req: { dbCheckpoint: Buffer | null; map: { epoch: number; root: Buffer } }): Promise<{ record: Checkpoint; bytes: Buffer }> {
    return this.exclusive(async () => {
      await this.settleAppendQuietly(); // the ring as the token holds it
      let accepted: Checkpoint | null = null;
      if (req.dbCheckpoint) {
        accepted = await decodeCheckpoint(this.hsm, req.dbCheckpoint);
        if (accepted.moduleSerial !== this.hsm.serial) {
          throw vbiError('CHECKPOINT_MISMATCH', `checkpoint belongs to module ${accepted.moduleSerial}, not ${this.hsm.serial}`);
        }
      }
      const record: Checkpoint = {
        moduleSerial: this.hsm.serial,
        seq: Math.max(this.ring.nextSeq(), (accepted?.seq ?? 0) + 1),
        meterId: '', type: 'reinstate', amount: 0, ascendingRegister: 0, descendingRegister: 0,
        time: this.now(),
        totals: accepted?.totals ?? { reset: 0, printed: 0, refunded: 0 },
        packageDigest: ZERO_DIGEST,
        prevDigest: req.dbCheckpoint ? digestOf(req.dbCheckpoint) : ZERO_DIGEST,
        slot: 0,
        mapEpoch: Math.max(this.anchor.epoch, req.map.epoch) + 1,
        mapRoot: Buffer.from(req.map.root),
      };
      return { record, bytes: await encodeCheckpoint(this.hsm, record) };
    });
  }

  /** Step 2, after COMMIT: the ring becomes [record], the anchor takes its map, the inhibition is lifted last. */
  completeReinstatement(req: { record: Checkpoint; bytes: Buffer; officer: string; approvedBy?: string[] }): Promise<AuditRecord | undefined> {
    return this.exclusive(async () => {
      await this.settleAppendQuietly();
      await this.ring.resetTo({ checkpoint: req.record, bytes: req.bytes });
      this.anchor.observe(req.record);
      // Lifted last: a crash before this line leaves the module inhibited, never half-reinstated.
      if ((await this.hsm.listDataObjects(INHIBIT_LABEL)).length > 0) await this.hsm.destroyDataObject(INHIBIT_LABEL);
      const previous = this.inhibit;
      this.inhibit = null;
      return this.emit({
        kind: 'module-reinstated',
        at: new Date(this.now()).toISOString(),
        reason: `reinstated by officer ${req.officer}${req.approvedBy ? `, approved by ${req.approvedBy.join(', ')}` : ''}`,
        details: { record: checkpointView(req.record), previousInhibit: previous, approvedBy: req.approvedBy ?? null },
      });
    });
  }

  /** Records an event in this module's signed audit chain; returns the stored record (none without a store). */
  private async emit(event: AuditEvent): Promise<AuditRecord | undefined> {
    if (!this.audit) return undefined;
    const r = await this.audit.append(event);
    await this.opts.onAudit?.(r);
    return r;
  }

  /**
   * Records an event of the service about this module (e.g. `service-started`) in the module's
   * chain; nothing while the module was never read (in Error since start: its key is out of reach).
   */
  async record(event: AuditEvent): Promise<AuditRecord | undefined> {
    if (!this.loaded) return undefined;
    return this.emit(event);
  }

  /**
   * Records `event` in the module's chain as part of the caller's database transaction
   * (AuditChain.appendWithin): stored through `store`, committed by `commit`, then the token's
   * head moves. Refused (MODULE_NOT_READY) when the module keeps no chain or was never read.
   */
  async recordWithin(store: AuditStore, event: AuditEvent, commit: () => Promise<void>): Promise<AuditRecord> {
    if (!this.loaded || !this.audit) throw vbiError('MODULE_NOT_READY', `module ${this.hsm.serial} keeps no audit chain here`);
    this.assertServing();
    const r = await this.audit.appendWithin(store, event, commit);
    await this.opts.onAudit?.(r);
    return r;
  }
}

function sameCheckpoint(db: Buffer | null, entry: RingEntry | undefined): boolean {
  if (db === null || db.length === 0) return entry === undefined;
  return entry !== undefined && entry.bytes.equals(db);
}
