import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { batchRoot, batchRootSync, batchSteps, batchTree, MAX_BATCH_SIZE, ReceiptBatch } from '@vbi/core/protocol/receipt-batch';
import { sha256 as webSha256 } from '@vbi/client/web/crypto/web-crypto';

const sha256 = (d: Buffer) => createHash('sha256').update(d).digest();
const leaves = (n: number) => Array.from({ length: n }, (_, i) => sha256(Buffer.from(`leaf ${i}`)));
const b64 = (path: Buffer[]) => path.map((h) => h.toString('base64'));

/**
 * The receipt tree's shape (packages/core/src/protocol/receipt-batch.ts), without a module: every leaf of
 * every size folds to the root with its path (SDK and WebCrypto alike), and nothing else does.
 * The module's signature over the root is tested against the real service in print-batch.test.ts.
 */
describe('receipt batch trees', () => {
  it('every leaf of trees of 1 to 70 leaves folds to the root, with node:crypto and with WebCrypto', async () => {
    for (let n = 1; n <= 70; n++) {
      const l = leaves(n);
      const { root, paths } = batchTree(l, sha256);
      for (let i = 0; i < n; i++) {
        const batch: ReceiptBatch = { size: n, index: i, path: b64(paths[i]) };
        expect(paths[i].length, `n=${n} i=${i}`).to.equal(batchSteps(i, n)!.length);
        expect(batchRootSync(l[i], batch, sha256)!.equals(root), `n=${n} i=${i}`).to.equal(true);
        if (n <= 9 || i === n - 1) expect((await batchRoot(l[i], batch, webSha256))!.equals(root), `web n=${n} i=${i}`).to.equal(true);
      }
    }
  });

  it('one leaf is its own root; two lists differing in one leaf or in length have different roots', () => {
    const l = leaves(7);
    expect(batchTree([l[0]], sha256).root.equals(l[0])).to.equal(true);
    const root = batchTree(l, sha256).root;
    expect(batchTree([...l.slice(0, 6), sha256(Buffer.from('other'))], sha256).root.equals(root)).to.equal(false);
    // the odd last node goes up unchanged: seven leaves and the same seven with the last repeated differ
    expect(batchTree([...l, l[6]], sha256).root.equals(root)).to.equal(false);
    expect(batchTree(l.slice(0, 6), sha256).root.equals(root)).to.equal(false);
  });

  it('a wrong leaf, index, size or path does not fold to the root; malformed positions and paths fold to nothing', () => {
    const l = leaves(11);
    const { root, paths } = batchTree(l, sha256);
    const ok: ReceiptBatch = { size: 11, index: 5, path: b64(paths[5]) };
    const folds = (leaf: Buffer, b: ReceiptBatch) => batchRootSync(leaf, b, sha256)?.equals(root) ?? null;
    expect(folds(l[5], ok)).to.equal(true);
    expect(folds(l[4], ok)).to.equal(false);
    expect(folds(l[5], { ...ok, index: 4 })).to.equal(false);
    expect(folds(l[5], { ...ok, path: b64(paths[4]) })).to.equal(false);
    // a size that gives leaf 5 another shape of path folds to nothing; one with the same shape folds
    // to the same root: the size is bound by the module's signature (receiptBatchSignedBytes)
    expect(folds(l[5], { ...ok, size: 6 })).to.equal(null);
    expect(folds(l[5], { ...ok, size: 12 })).to.equal(true);
    expect(folds(l[5], { ...ok, path: ok.path.slice(1) })).to.equal(null);
    expect(folds(l[5], { ...ok, path: [...ok.path, ok.path[0]] })).to.equal(null);
    expect(folds(l[5], { ...ok, path: [ok.path[0].slice(4), ...ok.path.slice(1)] })).to.equal(null);
    expect(folds(l[5], { ...ok, index: 11 })).to.equal(null);
    expect(folds(l[5], { ...ok, index: -1 })).to.equal(null);
    expect(folds(l[5], { ...ok, index: 5.5 })).to.equal(null);
    expect(folds(l[5], { ...ok, size: MAX_BATCH_SIZE + 1 })).to.equal(null);
    expect(folds(l[5], { ...ok, path: 'x' as unknown as string[] })).to.equal(null);
    expect(folds(l[5], null as unknown as ReceiptBatch)).to.equal(null);
  });
});
