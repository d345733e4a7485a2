import { AsyncLocalStorage } from 'node:async_hooks';

/** Which mutexes the current async call chain holds (for re-entry). */
const held = new AsyncLocalStorage<ReadonlySet<Mutex>>();

/**
 * A FIFO async lock. Re-entrant within one async call chain: a function that already runs
 * under the lock (the transaction engine around a module command) may call others that take it
 * (recovery, inhibition) without deadlocking. Work started from inside and left running after
 * the holder returns must not rely on the lock.
 */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();

  /** True when the calling async chain holds this lock. */
  heldHere(): boolean {
    return held.getStore()?.has(this) ?? false;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.heldHere()) return fn();
    const prev = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((r) => (release = r));
    await prev;
    try {
      const outer = held.getStore();
      return await held.run(new Set([...(outer ?? []), this]), fn);
    } finally {
      release();
    }
  }
}
