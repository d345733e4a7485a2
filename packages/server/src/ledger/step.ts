import type { Knex } from 'knex';
import type { DispatchResult, PsdCommand } from '../module/psd-engine';
import type { PoolMovement } from '../module/commands/master-psd';

/** What the module runs on the meter's package, with what the step's `before` read for it. */
export type Execute<R, I = void> = (pkg: Parameters<PsdCommand<R>['execute']>[0], ctx: Parameters<PsdCommand<R>['execute']>[1], input: I) => ReturnType<PsdCommand<R>['execute']>;

/**
 * Errors that take the module that raised them out of rotation; the command goes to the next
 * module. A plain token error (HSM_ERROR) does so only when the module's health check then fails:
 * otherwise it was this command's own failure and the module keeps serving. A refused template or
 * mechanism (HSM_OPERATION_REFUSED) is always the command's own: no health check, no rotation change.
 */
export const MODULE_FAULTS = [
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
   * on the master PSD (GroupRunner.runMaster) instead of a meter command; `meterId` is MASTER_PSD_ID.
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
   * (GroupRunner.runMaster); a refusal there (POOL_EXHAUSTED) fails the command. Null or 0 mills: no movement.
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
export type AnyStep = Step<unknown, unknown, unknown>;
