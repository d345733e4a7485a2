import { DispatchResult } from './psd-engine';
import { EMPTY, EMPTY_ROOT, MeterMapView, siblingPositions } from './meter-map';

/**
 * The meter map's database side kept in memory: nodes, each meter's slot, the next free slot,
 * and the map row (epoch, root). For the in-memory reference store and module-level tests; the
 * service keeps the same in PostgreSQL (packages/server/src/ledger/pg-meter-map.ts).
 */
export class MemoryMeterMap {
  epoch = 0;
  root = EMPTY_ROOT;
  private readonly nodes = new Map<string, Buffer>();
  private readonly slots = new Map<string, number>();
  private nextSlot = 0;

  /** What the database would present for a command on `meterId` (a new meter gets the next free slot). */
  view(meterId: string): MeterMapView {
    const slot = this.slots.get(meterId) ?? this.nextSlot;
    return {
      epoch: this.epoch, root: this.root, slot,
      siblings: siblingPositions(slot).map((p) => this.nodes.get(`${p.level}:${p.index}`) ?? EMPTY[p.level]),
    };
  }

  /** The meter's row was deleted (a discarded MeterGen meter): its slot stays taken, a new meter of that id gets a new one. */
  forget(meterId: string): void {
    this.slots.delete(meterId);
  }

  /** Stores what a command changed, as the database transaction would. */
  store(r: DispatchResult<unknown>): void {
    for (const n of r.mapNodes) this.nodes.set(`${n.level}:${n.index}`, n.hash);
    if (!this.slots.has(r.record.meterId)) {
      this.slots.set(r.record.meterId, r.record.slot);
      this.nextSlot = Math.max(this.nextSlot, r.record.slot + 1);
    }
    this.epoch = r.record.mapEpoch;
    this.root = r.record.mapRoot;
  }
}
