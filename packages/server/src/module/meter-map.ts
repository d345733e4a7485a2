import { createHash } from 'node:crypto';

/**
 * The meter map: a sparse binary Merkle tree over meter slots whose root is part of every
 * checkpoint record, so the newest root lives in the modules' token rings. Every command proves
 * the presented package against that root (docs/checkpoint.md, "Meter map").
 *
 * Persisted: the depth, the hash domain bytes and the leaf layout are part of every checkpoint
 * ever written. Never change them.
 *
 *   leaf(slot, meter, package)  = SHA-256(0x00 | slot u64 BE | len u8 | meter id ASCII | SHA-256(sealed package))
 *   node(left, right)           = SHA-256(0x01 | left | right)
 *   empty leaf                  = 32 zero bytes; an empty subtree of height h hashes to EMPTY[h]
 */
export const MAP_DEPTH = 24;
/** Slots per map shard. */
export const MAP_SLOTS = 2 ** MAP_DEPTH;

export const EMPTY_LEAF = Buffer.alloc(32);

function node(left: Buffer, right: Buffer): Buffer {
  return createHash('sha256').update(Buffer.from([1])).update(left).update(right).digest();
}

/** EMPTY[h]: hash of an empty subtree of height h (EMPTY[0] = empty leaf, EMPTY[MAP_DEPTH] = empty root). */
export const EMPTY: readonly Buffer[] = (() => {
  const e: Buffer[] = [EMPTY_LEAF];
  for (let h = 1; h <= MAP_DEPTH; h++) e.push(node(e[h - 1], e[h - 1]));
  return e;
})();

export const EMPTY_ROOT = EMPTY[MAP_DEPTH];

export function assertSlot(slot: number): void {
  if (!Number.isSafeInteger(slot) || slot < 0 || slot >= MAP_SLOTS) throw new RangeError(`meter map slot ${slot} out of range`);
}

export function leafHash(slot: number, meterId: string, packageDigest: Buffer): Buffer {
  assertSlot(slot);
  const id = Buffer.from(meterId, 'ascii');
  const head = Buffer.alloc(10);
  head[0] = 0;
  head.writeBigUInt64BE(BigInt(slot), 1);
  head[9] = id.length;
  return createHash('sha256').update(head).update(id).update(packageDigest).digest();
}

/** A stored node: level 0 = leaves, level MAP_DEPTH = the root; index = position within the level. */
export interface MapNode { level: number; index: number; hash: Buffer }

/** Positions of the siblings on the path from `slot` to the root, bottom-up (level 0 .. MAP_DEPTH-1). */
export function siblingPositions(slot: number): Array<{ level: number; index: number }> {
  assertSlot(slot);
  const out: Array<{ level: number; index: number }> = [];
  let index = slot;
  for (let level = 0; level < MAP_DEPTH; level++) {
    out.push({ level, index: index % 2 === 0 ? index + 1 : index - 1 });
    index = Math.floor(index / 2);
  }
  return out;
}

/** The nodes on the path from `slot` (with `leaf`) to the root, bottom-up; the last one is the root. */
export function pathNodes(slot: number, leaf: Buffer, siblings: readonly Buffer[]): MapNode[] {
  assertSlot(slot);
  if (siblings.length !== MAP_DEPTH || siblings.some((s) => s.length !== 32)) throw new RangeError('a map proof has one 32-byte sibling per level');
  const out: MapNode[] = [{ level: 0, index: slot, hash: leaf }];
  let index = slot;
  let h = leaf;
  for (let level = 0; level < MAP_DEPTH; level++) {
    h = index % 2 === 0 ? node(h, siblings[level]) : node(siblings[level], h);
    index = Math.floor(index / 2);
    out.push({ level: level + 1, index, hash: h });
  }
  return out;
}

export function rootOf(slot: number, leaf: Buffer, siblings: readonly Buffer[]): Buffer {
  return pathNodes(slot, leaf, siblings)[MAP_DEPTH].hash;
}

/**
 * Rebuilds a map from its leaves (offline verification, map repair): returns the root and every
 * non-empty node. Cost O(leaves x depth).
 */
export function buildMap(leaves: ReadonlyMap<number, Buffer>): { root: Buffer; nodes: MapNode[] } {
  const nodes: MapNode[] = [];
  let level = new Map<number, Buffer>();
  for (const [slot, leaf] of leaves) {
    assertSlot(slot);
    if (!leaf.equals(EMPTY_LEAF)) level.set(slot, leaf);
  }
  for (const [index, hash] of level) nodes.push({ level: 0, index, hash });
  for (let l = 0; l < MAP_DEPTH; l++) {
    const up = new Map<number, Buffer>();
    for (const index of level.keys()) {
      const parent = Math.floor(index / 2);
      if (up.has(parent)) continue;
      const left = level.get(parent * 2) ?? EMPTY[l];
      const right = level.get(parent * 2 + 1) ?? EMPTY[l];
      up.set(parent, node(left, right));
    }
    for (const [index, hash] of up) nodes.push({ level: l + 1, index, hash });
    level = up;
  }
  return { root: level.get(0) ?? EMPTY_ROOT, nodes };
}

/** What the database presents with a command: the map's state and the proof for the meter's slot. */
export interface MeterMapView {
  epoch: number;
  root: Buffer;
  slot: number;
  /** Sibling hashes bottom-up, one per level (missing nodes are EMPTY[level]). */
  siblings: Buffer[];
}
