import { HsmModule } from '../hsm/hsm-module';
import { Checkpoint, decodeCheckpoint } from './checkpoint';
import { readU64, u64 } from '../psd/tlv';

/** Label prefixes of the module's token data objects. Persisted: never change. */
export const RING_PREFIX = 'vbi.ckpt.';
export const CONFIRMED_PREFIX = 'vbi.confirmed.';

export interface RingEntry { checkpoint: Checkpoint; bytes: Buffer }

const ringLabel = (seq: number) => `${RING_PREFIX}${String(seq).padStart(16, '0')}`;
const confirmedLabel = (seq: number) => `${CONFIRMED_PREFIX}${String(seq).padStart(16, '0')}`;

/**
 * The checkpoint ring: the module's newest N checkpoint records, each in its own private
 * CKO_DATA token object (SoftHSM2 cannot change the value of a data object, so the ring turns
 * by creating the new record and then destroying the oldest: a crash in between leaves N+1
 * records, never fewer than one).
 *
 * Confirmation: a record is confirmed once the database has presented it back (a later
 * command was dispatched with it as the database's checkpoint). Every record that has a
 * successor was confirmed that way, so only the newest can be unconfirmed; when the newest is
 * presented but no successor follows (the command failed after the check), a confirmation
 * marker object records it. The marker also carries the sequence floor across a reinstate.
 *
 * The ring is read from the token once at start and then kept in memory: one process owns a
 * module token (pkcs11-notes: SoftHSM2 2.6 races between processes sharing a token).
 */
export class CheckpointRing {
  private entries: RingEntry[] = [];
  private confirmedMarker = 0;

  constructor(private readonly hsm: HsmModule, readonly size: number) {}

  async load(): Promise<void> {
    const objs = await this.hsm.listDataObjects(RING_PREFIX);
    const entries: RingEntry[] = [];
    for (const o of objs) entries.push({ checkpoint: await decodeCheckpoint(this.hsm, o.value), bytes: o.value });
    this.entries = entries.sort((a, b) => a.checkpoint.seq - b.checkpoint.seq);
    const markers = await this.hsm.listDataObjects(CONFIRMED_PREFIX);
    this.confirmedMarker = Math.max(0, ...markers.map((m) => readU64(m.value, 'confirmed seq')));
  }

  /** Entries oldest first. */
  list(): readonly RingEntry[] {
    return this.entries;
  }

  newest(): RingEntry | undefined {
    return this.entries[this.entries.length - 1];
  }

  /** Highest sequence number the database is known to have stored. */
  confirmedSeq(): number {
    const withSuccessor = this.entries.length > 1 ? this.entries[this.entries.length - 2].checkpoint.seq : 0;
    return Math.max(withSuccessor, this.confirmedMarker);
  }

  nextSeq(): number {
    return Math.max(this.newest()?.checkpoint.seq ?? 0, this.confirmedMarker) + 1;
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

  /** Persists that the database has stored record `seq` (no-op if already known). */
  async confirm(seq: number): Promise<void> {
    if (seq <= this.confirmedSeq()) return;
    await this.writeMarker(seq);
  }

  /** Removes the newest record (auto-recovery of an unconfirmed transaction). */
  async discardNewest(): Promise<RingEntry> {
    const newest = this.entries[this.entries.length - 1];
    await this.hsm.destroyDataObject(ringLabel(newest.checkpoint.seq));
    this.entries.pop();
    return newest;
  }

  /**
   * Officer reinstatement: the ring becomes exactly [accepted] (or empty), newest first
   * destroyed, and the sequence floor is kept so sequence numbers are never reused.
   */
  async resetTo(accepted: RingEntry | null): Promise<void> {
    const floor = Math.max(this.nextSeq() - 1, accepted?.checkpoint.seq ?? 0);
    for (const e of [...this.entries].reverse()) {
      await this.hsm.destroyDataObject(ringLabel(e.checkpoint.seq));
    }
    this.entries = [];
    if (accepted) {
      await this.hsm.createDataObject({ label: ringLabel(accepted.checkpoint.seq), value: accepted.bytes });
      this.entries = [accepted];
    }
    await this.writeMarker(floor);
  }

  private async writeMarker(seq: number): Promise<void> {
    const old = await this.hsm.listDataObjects(CONFIRMED_PREFIX);
    await this.hsm.createDataObject({ label: confirmedLabel(seq), value: u64(seq) });
    for (const o of old) if (o.label !== confirmedLabel(seq)) await this.hsm.destroyDataObject(o.label);
    this.confirmedMarker = seq;
  }
}
