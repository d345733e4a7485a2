import { canonicalJson } from './canonical-json';
import { PROTOCOL, Receipt, receiptSignedBytes } from './messages';

/**
 * Batch receipts (docs/protocol.md, "Receipts"): the items of one print or correction request
 * share one module signature. Each item's receipt is a leaf of a binary hash tree; the module signs
 * the tree's root and size once, and each item's receipt carries its index and the sibling hashes
 * from its leaf up to the root, so it still proves its own debit alone.
 *
 *   leaf = SHA-256(0x00 || receiptSignedBytes(receipt without signature and batch))
 *   node = SHA-256(0x01 || left || right)
 *
 * Each level pairs nodes (0,1), (2,3), ...; an odd last node goes up unchanged (no duplicate, so
 * two different lists never share a root). The prefixes keep a leaf from passing for a node.
 * This file holds the shape of the tree; the hash comes from the caller (node:crypto in the
 * service and the SDK, WebCrypto in the browser).
 */

/** Where a batch receipt sits in its request's tree. */
export interface ReceiptBatch {
  /** Items in the tree (1 to MAX_BATCH_SIZE). */
  size: number;
  /** This receipt's leaf, 0-based. */
  index: number;
  /** Sibling hashes from the leaf up (base64, 32 bytes each); as many as batchSteps() has. */
  path: string[];
}

/** Upper bound on a batch receipt's tree: a print request's item limit, with room. */
export const MAX_BATCH_SIZE = 4096;

export const LEAF_PREFIX = 0x00;
export const NODE_PREFIX = 0x01;

/** The bytes a receipt's leaf hashes: the prefix, then what a single receipt's signature covers. */
export function receiptLeafInput(r: Omit<Receipt, 'signature' | 'batch'> & { signature?: unknown; batch?: unknown }): Buffer {
  const { signature: _signature, batch: _batch, ...fields } = r;
  return Buffer.concat([Buffer.from([LEAF_PREFIX]), receiptSignedBytes(fields)]);
}

/** The bytes of an inner node. */
export function nodeInput(left: Buffer, right: Buffer): Buffer {
  return Buffer.concat([Buffer.from([NODE_PREFIX]), left, right]);
}

/** What the module signs for a batch: the root and the number of leaves. */
export function receiptBatchSignedBytes(b: { root: Buffer; size: number }): Buffer {
  return Buffer.from(`${PROTOCOL}\nreceipt-batch\n${canonicalJson({ root: b.root.toString('base64'), size: b.size })}`, 'utf8');
}

/**
 * For leaf `index` of `size`, the side of the sibling at each level that has one, leaf upward:
 * 'left' when the sibling comes first. An odd last node has none at that level and goes up as is.
 * Null when index/size are not a valid position.
 */
export function batchSteps(index: number, size: number): Array<'left' | 'right'> | null {
  if (!Number.isSafeInteger(size) || !Number.isSafeInteger(index) || size < 1 || size > MAX_BATCH_SIZE || index < 0 || index >= size) return null;
  const steps: Array<'left' | 'right'> = [];
  for (let i = index, n = size; n > 1; i >>= 1, n = (n + 1) >> 1) {
    if (i % 2 === 1) steps.push('left');
    else if (i + 1 < n) steps.push('right');
  }
  return steps;
}

/**
 * The tree over `leaves` (leaf hashes): its root and each leaf's path (sibling hashes, leaf
 * upward), with `hash` = SHA-256. Used by the module; a client only folds one path.
 */
export function batchTree(leaves: Buffer[], hash: (data: Buffer) => Buffer): { root: Buffer; paths: Buffer[][] } {
  if (leaves.length < 1 || leaves.length > MAX_BATCH_SIZE) throw new RangeError(`a receipt batch has 1 to ${MAX_BATCH_SIZE} leaves, not ${leaves.length}`);
  const paths: Buffer[][] = leaves.map(() => []);
  // owners[k]: the leaves under node k of the current level
  let level = leaves;
  let owners = leaves.map((_, i) => [i]);
  while (level.length > 1) {
    const up: Buffer[] = [];
    const upOwners: number[][] = [];
    for (let k = 0; k < level.length; k += 2) {
      if (k + 1 === level.length) {
        up.push(level[k]);
        upOwners.push(owners[k]);
        continue;
      }
      for (const leaf of owners[k]) paths[leaf].push(level[k + 1]);
      for (const leaf of owners[k + 1]) paths[leaf].push(level[k]);
      up.push(hash(nodeInput(level[k], level[k + 1])));
      upOwners.push([...owners[k], ...owners[k + 1]]);
    }
    level = up;
    owners = upOwners;
  }
  return { root: level[0], paths };
}

/**
 * The root a batch receipt's path leads to, or null when its position or path is malformed (a
 * path of the wrong length, a hash that is not 32 bytes). `hash` may be asynchronous (WebCrypto).
 */
export async function batchRoot(leaf: Buffer, batch: ReceiptBatch, hash: (data: Buffer) => Buffer | Promise<Buffer>): Promise<Buffer | null> {
  const fold = pathFold(leaf, batch);
  if (!fold) return null;
  let step = fold.next();
  while (!step.done) step = fold.next(await hash(step.value));
  return step.value;
}

/** The same with a synchronous hash (node:crypto). */
export function batchRootSync(leaf: Buffer, batch: ReceiptBatch, hash: (data: Buffer) => Buffer): Buffer | null {
  const fold = pathFold(leaf, batch);
  if (!fold) return null;
  let step = fold.next();
  while (!step.done) step = fold.next(hash(step.value));
  return step.value;
}

/** The path's fold: yields each node's input, takes its hash back, returns the root. */
function pathFold(leaf: Buffer, batch: ReceiptBatch): Generator<Buffer, Buffer, Buffer> | null {
  const steps = shapeOk(batch);
  if (!steps) return null;
  return (function* () {
    let h = leaf;
    for (const [k, side] of steps.entries()) {
      const sibling = Buffer.from(batch.path[k], 'base64');
      h = yield side === 'left' ? nodeInput(sibling, h) : nodeInput(h, sibling);
    }
    return h;
  })();
}

const B64_32 = /^[A-Za-z0-9+/]{43}=$/;

function shapeOk(batch: ReceiptBatch): Array<'left' | 'right'> | null {
  if (!batch || typeof batch !== 'object' || !Array.isArray(batch.path)) return null;
  const steps = batchSteps(batch.index, batch.size);
  if (!steps || steps.length !== batch.path.length) return null;
  if (!batch.path.every((p) => typeof p === 'string' && B64_32.test(p))) return null;
  return steps;
}
