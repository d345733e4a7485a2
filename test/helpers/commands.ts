import { CommandOutcome, PsdCommand, PsdEngine, DispatchResult } from '../../src/module/psd-engine';
import { newPackage, PsdPackage } from '../../src/psd/psd-package';

/**
 * Minimal commands for exercising the engine's checkpoint handling at the module level. The
 * real PSD commands (PVD, indicium, refund, ...) are built on the same dispatch.
 */
export function createMeterCommand(meterId: string, dbCheckpoint: Buffer | null): PsdCommand<null> {
  return {
    meterId, sealedPackage: null, dbCheckpoint,
    execute: async (): Promise<CommandOutcome<null>> => ({
      package: { ...newPackage({ meterId, maxDescendingRegister: 1_000_000 }), state: 'active' },
      type: 'meter-create', amount: 0, result: null,
    }),
  };
}

export function creditCommand(meterId: string, sealedPackage: Buffer, dbCheckpoint: Buffer | null, amount: number): PsdCommand<number> {
  return {
    meterId, sealedPackage, dbCheckpoint,
    execute: async (pkg: PsdPackage | null): Promise<CommandOutcome<number>> => {
      const p = pkg as PsdPackage;
      if (p.descendingRegister + amount > p.maxDescendingRegister) throw new Error('over max DR');
      return { package: { ...p, descendingRegister: p.descendingRegister + amount }, type: 'pvd', amount, totals: { reset: amount }, result: p.descendingRegister + amount };
    },
  };
}

/** A stand-in for the database's two rows: the meter's package and the module's checkpoint. */
export class Rows {
  pkg: Buffer | null = null;
  checkpoint: Buffer | null = null;

  store<R>(r: DispatchResult<R>): R {
    this.pkg = r.sealedPackage;
    this.checkpoint = r.checkpoint;
    return r.result;
  }

  async create(engine: PsdEngine, meterId: string): Promise<void> {
    this.store(await engine.dispatch(createMeterCommand(meterId, this.checkpoint)));
  }

  async credit(engine: PsdEngine, meterId: string, amount: number): Promise<number> {
    return this.store(await engine.dispatch(creditCommand(meterId, this.pkg as Buffer, this.checkpoint, amount)));
  }
}
