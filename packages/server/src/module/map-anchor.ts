import { Checkpoint } from './checkpoint';
import { EMPTY_ROOT } from './meter-map';
import { Mutex } from './mutex';

/**
 * The authority on the meter map for one process: the newest (epoch, root) found in the rings
 * of its modules, advanced by every committed command. The database's map row must equal it
 * before anything is signed. One per process, shared by all its modules; its lock serialises
 * every command that changes a package, from dispatch to ring append (the map is one tree).
 */
export class MeterMapAnchor {
  readonly lock = new Mutex();
  private current = { epoch: 0, root: EMPTY_ROOT };

  get epoch(): number {
    return this.current.epoch;
  }

  get root(): Buffer {
    return this.current.root;
  }

  /** Takes a record's map state if it is newer than what the anchor holds (start-up, roll-forward, commit). */
  observe(c: Pick<Checkpoint, 'mapEpoch' | 'mapRoot'>): void {
    if (c.mapEpoch > this.current.epoch) this.current = { epoch: c.mapEpoch, root: Buffer.from(c.mapRoot) };
  }

  matches(view: { epoch: number; root: Buffer }): boolean {
    return view.epoch === this.current.epoch && view.root.equals(this.current.root);
  }
}
