import { CommandOutcome, PsdCommand, PsdEngine, DispatchResult } from '@vbi/server/module/psd-engine';
import { newPackage, PsdPackage } from '@vbi/core/psd/psd-package';
import { MemoryMeterMap } from '@vbi/server/module/memory-meter-map';
import { MeterMapView } from '@vbi/server/module/meter-map';

/**
 * Minimal commands for exercising the engine's checkpoint and map handling at the module level.
 * The real PSD commands (PVD, indicium, refund, ...) are built on the same prepare/complete.
 */
export function createMeterCommand(meterId: string, dbCheckpoint: Buffer | null, map: MeterMapView): PsdCommand<null> {
  return {
    meterId, sealedPackage: null, dbCheckpoint, map,
    execute: async (): Promise<CommandOutcome<null>> => ({
      package: { ...newPackage({ meterId, maxDescendingRegister: 1_000_000 }), state: 'active' },
      type: 'meter-create', amount: 0, result: null,
    }),
  };
}

export function creditCommand(meterId: string, sealedPackage: Buffer, dbCheckpoint: Buffer | null, amount: number, map: MeterMapView): PsdCommand<number> {
  return {
    meterId, sealedPackage, dbCheckpoint, map,
    execute: async (pkg: PsdPackage | null): Promise<CommandOutcome<number>> => {
      const p = pkg as PsdPackage;
      if (p.descendingRegister + amount > p.maxDescendingRegister) throw new Error('over max DR');
      return { package: { ...p, descendingRegister: p.descendingRegister + amount }, type: 'pvd', amount, totals: { reset: amount }, result: p.descendingRegister + amount };
    },
  };
}

/** A stand-in for the database's rows: each meter's package, the module's checkpoint, the meter map. */
export class Rows {
  readonly packages = new Map<string, Buffer>();
  checkpoint: Buffer | null = null;
  readonly map = new MemoryMeterMap();

  pkg(meterId: string): Buffer {
    return this.packages.get(meterId) as Buffer;
  }

  /** What a committed transaction stores. */
  store<R>(r: DispatchResult<R>): R {
    this.packages.set(r.package.meterId, r.sealedPackage);
    this.checkpoint = r.checkpoint;
    this.map.store(r);
    return r.result;
  }

  async create(engine: PsdEngine, meterId: string): Promise<void> {
    this.store(await engine.dispatch(createMeterCommand(meterId, this.checkpoint, this.map.view(meterId))));
  }

  creditCommand(meterId: string, amount: number): PsdCommand<number> {
    return creditCommand(meterId, this.pkg(meterId), this.checkpoint, amount, this.map.view(meterId));
  }

  async credit(engine: PsdEngine, meterId: string, amount: number): Promise<number> {
    return this.store(await engine.dispatch(this.creditCommand(meterId, amount)));
  }
}
