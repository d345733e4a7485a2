import { createHash } from 'node:crypto';
import { HsmModule } from '../hsm/hsm-module';
import { AuditEvent, AuditRecord, canonicalJson, verifyAuditSignature } from './audit';
import { Mutex } from './mutex';

/** Label prefix of the token object holding the chain's head. Persisted: never change. */
export const AUDIT_HEAD_PREFIX = 'vbi.audit.';
const headLabel = (seq: number) => `${AUDIT_HEAD_PREFIX}${String(seq).padStart(16, '0')}`;

export const GENESIS_HASH = '0'.repeat(64);

/** Where the chained records are kept (PostgreSQL's audit_log in the service: packages/server/src/ledger/audit-store.ts). */
export interface AuditStore {
  /** This module's chained record with the highest sequence number, if any. */
  last(moduleSerial: string): Promise<AuditRecord | null>;
  insert(record: AuditRecord): Promise<void>;
}

export interface ChainHead { seq: number; hash: string }

/** SHA-256 over the canonical JSON of the whole record, signature included: what the next record names. */
export function auditHash(r: AuditRecord): string {
  return createHash('sha256').update(canonicalJson(r), 'utf8').digest('hex');
}

/** The chain's head as the token holds it (the newest of the head objects a crash may have left two of). */
export async function readAuditHead(hsm: HsmModule): Promise<ChainHead | null> {
  const objs = await hsm.listDataObjects(AUDIT_HEAD_PREFIX);
  const newest = objs
    .map((o) => ({ seq: Number(o.label.slice(AUDIT_HEAD_PREFIX.length)), hash: o.value.toString('hex') }))
    .filter((h) => Number.isSafeInteger(h.seq) && h.seq > 0)
    .sort((a, b) => b.seq - a.seq)[0];
  return newest ?? null;
}

/**
 * One module's signed audit log: every record carries the next sequence number and the hash of
 * the record before it, and is signed by the module identity key; the token holds the head (the
 * newest record's sequence number and hash) in a private data object, so records deleted from
 * the end, or a whole log swapped for an older copy, are seen against it.
 *
 * A record is stored first and the head moved after, so a crash in between leaves the store one
 * record ahead of the token: open() moves the head forward over exactly one such record when it
 * is signed by this module and names the head. Anything else — the store behind the head, a
 * different record at the head's number, records beyond it — is a broken chain: open() and
 * append() record what they found as an `audit-chain-broken` record in the chain itself, which
 * always continues from the token's head. The evidence stays: `npm run audit -- verify`
 * reports the gap or the edit for as long as the records are kept.
 */
export class AuditChain {
  private head: ChainHead | null = null;
  private readonly lock = new Mutex();
  private opened = false;

  constructor(private readonly hsm: HsmModule, private readonly store: AuditStore, private readonly now: () => number = Date.now) {}

  /**
   * Reads the head from the token and checks the store's newest record against it. A break is
   * recorded at once (`audit-chain-broken`) and returned; null when the log is in step.
   */
  open(): Promise<string | null> {
    return this.lock.run(async () => {
      this.head = await readAuditHead(this.hsm);
      this.opened = true;
      const broken = await this.check();
      if (broken) await this.write(brokenEvent(broken, this.now()));
      return broken;
    });
  }

  /**
   * Appends one record: checks the store's newest record against the head first (a difference is
   * recorded before the event, as an `audit-chain-broken` record), then signs and stores the
   * event, then moves the token's head.
   */
  append(event: AuditEvent): Promise<AuditRecord> {
    return this.lock.run(async () => {
      if (!this.opened) throw new Error(`audit chain of module ${this.hsm.serial} used before open()`);
      const broken = await this.check();
      if (broken) await this.write(brokenEvent(broken, this.now()));
      return this.write(event);
    });
  }

  /**
   * Appends one record as part of the caller's database transaction: the record is stored
   * through `store` (bound to that transaction), then `commit` commits it, and only then does the
   * token's head move. A commit that fails leaves neither the record nor a moved head. The chain
   * stays locked until then, so no other record can take this one's place in the chain.
   */
  appendWithin(store: AuditStore, event: AuditEvent, commit: () => Promise<void>): Promise<AuditRecord> {
    return this.lock.run(async () => {
      if (!this.opened) throw new Error(`audit chain of module ${this.hsm.serial} used before open()`);
      const broken = await this.check();
      if (broken) await this.write(brokenEvent(broken, this.now()));
      const record = await this.sign(event, await store.last(this.hsm.serial));
      await store.insert(record);
      await commit();
      await this.moveHead({ seq: record.seq, hash: auditHash(record) });
      return record;
    });
  }

  private async sign(event: AuditEvent, storeLast: AuditRecord | null): Promise<AuditRecord> {
    const seq = Math.max(this.head?.seq ?? 0, storeLast?.seq ?? 0) + 1;
    const unsigned = { ...event, moduleSerial: this.hsm.serial, seq, prevHash: this.head?.hash ?? GENESIS_HASH };
    const signature = await this.hsm.identitySign(Buffer.from(canonicalJson(unsigned), 'utf8'));
    return { ...unsigned, signature: signature.toString('base64') };
  }

  private async write(event: AuditEvent): Promise<AuditRecord> {
    const storeLast = await this.store.last(this.hsm.serial);
    const record = await this.sign(event, storeLast);
    await this.store.insert(record);
    await this.moveHead({ seq: record.seq, hash: auditHash(record) });
    return record;
  }

  private async moveHead(next: ChainHead): Promise<void> {
    const old = await this.hsm.listDataObjects(AUDIT_HEAD_PREFIX);
    await this.hsm.createDataObject({ label: headLabel(next.seq), value: Buffer.from(next.hash, 'hex') });
    // created before the old one goes: a crash in between leaves two heads, and the newer counts
    for (const o of old) if (o.label !== headLabel(next.seq)) await this.hsm.destroyDataObject(o.label);
    this.head = next;
  }

  /** The store's newest record against the head; rolls the head forward over one record a crash left. */
  private async check(): Promise<string | null> {
    const last = await this.store.last(this.hsm.serial);
    const head = this.head;
    if (!head) {
      return last ? `the token holds no audit head but the log holds records up to ${last.seq} (token re-initialised, or its head deleted)` : null;
    }
    if (!last) return `the log holds none of this module's records but the token's head is record ${head.seq} (records deleted, or the log swapped)`;
    if (last.seq === head.seq) {
      return auditHash(last) === head.hash ? null : `record ${head.seq} is not the one the token's head names (edited or replaced)`;
    }
    if (last.seq === head.seq + 1 && last.prevHash === head.hash && verifyAuditSignature(last, this.hsm.identityPublicKey())) {
      await this.moveHead({ seq: last.seq, hash: auditHash(last) });
      return null;
    }
    return last.seq < head.seq
      ? `the log ends at record ${last.seq} but the token's head is record ${head.seq} (records deleted from the end, or an older copy restored)`
      : `the log holds record ${last.seq} beyond the token's head ${head.seq} that this module did not write`;
  }
}

function brokenEvent(reason: string, now: number): AuditEvent {
  return { kind: 'audit-chain-broken', at: new Date(now).toISOString(), reason, details: {} };
}
