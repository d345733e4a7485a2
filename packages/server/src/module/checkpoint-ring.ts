import { HsmModule } from '../hsm/hsm-module';
import { Checkpoint, decodeCheckpoint } from './checkpoint';
import { readU64, u64 } from '@vbi/core/psd/tlv';

/** Label prefixes of the module's token data objects. Persisted: never change. */
export const RING_PREFIX = 'vbi.ckpt.';
export const FLOOR_PREFIX = 'vbi.seqfloor.';

export interface RingEntry { checkpoint: Checkpoint; bytes: Buffer }

const ringLabel = (seq: number) => `${RING_PREFIX}${String(seq).padStart(16, '0')}`;
const floorLabel = (seq: number) => `${FLOOR_PREFIX}${String(seq).padStart(16, '0')}`;

/**
 * The checkpoint ring: the module's newest N checkpoint records, each in its own private
 * CKO_DATA token object (SoftHSM2 cannot change the value of a data object, so the ring turns
 * by creating the new record and then destroying the oldest: a crash in between leaves N+1
 * records, never fewer than one).
 *
 * A record enters the ring only after the database has committed it (commit, then checkpoint,
 * then release: docs/checkpoint.md), so the ring is never legitimately ahead of the database.
 *
 * The ring is read from the token once at start and then kept in memory: one process owns a
 * module token, under a lease (packages/server/src/ledger/module-lease.ts).
 */
export class CheckpointRing {
  private entries: RingEntry[] = [];
  /** Sequence floor after an officer reinstatement: numbers at or below it are never reused. */
  private floor = 0;

  constructor(private readonly hsm: HsmModule, readonly size: number) {}

  async load(): Promise<void> {
    const objs = await this.hsm.listDataObjects(RING_PREFIX);
    const entries: RingEntry[] = [];
    for (const o of objs) entries.push({ checkpoint: await decodeCheckpoint(this.hsm, o.value), bytes: o.value });
    this.entries = entries.sort((a, b) => a.checkpoint.seq - b.checkpoint.seq);
    const markers = await this.hsm.listDataObjects(FLOOR_PREFIX);
    this.floor = Math.max(0, ...markers.map((m) => readU64(m.value, 'sequence floor')));
  }

  /** Entries oldest first. */
  list(): readonly RingEntry[] {
    return this.entries;
  }

  newest(): RingEntry | undefined {
    return this.entries[this.entries.length - 1];
  }

  nextSeq(): number {
    return Math.max(this.newest()?.checkpoint.seq ?? 0, this.floor) + 1;
  }

  /** Adds the newest record, then drops the oldest beyond the ring size. */
  async append(entry: RingEntry): Promise<void> {
    await this.hsm.createDataObject({ label: ringLabel(entry.checkpoint.seq), value: entry.bytes });
    this.entries.push(entry);
    while (this.entries.length > this.size) {
      const oldest = this.entries[0];
      await this.hsm.destroyDataObject(ringLabel(oldest.checkpoint.seq));
      this.entries.shift();
    }
  }

  /**
   * Officer reinstatement: the ring becomes exactly [accepted], newest first destroyed, and the
   * sequence floor is raised so sequence numbers are never reused.
   */
  async resetTo(accepted: RingEntry): Promise<void> {
    const floor = Math.max(this.nextSeq() - 1, accepted.checkpoint.seq);
    await this.writeFloor(floor);
    for (const e of [...this.entries].reverse()) {
      if (e.checkpoint.seq !== accepted.checkpoint.seq) await this.hsm.destroyDataObject(ringLabel(e.checkpoint.seq));
    }
    if (!this.entries.some((e) => e.checkpoint.seq === accepted.checkpoint.seq)) {
      await this.hsm.createDataObject({ label: ringLabel(accepted.checkpoint.seq), value: accepted.bytes });
    }
    this.entries = [accepted];
  }

  private async writeFloor(seq: number): Promise<void> {
    const old = await this.hsm.listDataObjects(FLOOR_PREFIX);
    await this.hsm.createDataObject({ label: floorLabel(seq), value: u64(seq) });
    for (const o of old) if (o.label !== floorLabel(seq)) await this.hsm.destroyDataObject(o.label);
    this.floor = seq;
  }
}
