import { requireFreeSlots } from '../helpers/hsm';
import { expect } from 'chai';
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { runCrashLoop } from '../crash/crash-loop';

/**
 * The crash loop (docs/recovery.md) in the suite: the real service program (`npm start`'s
 * main) with its own SoftHSM2 tokens and embedded PostgreSQL, two mailers working through the
 * SDK, 20 SIGKILLs at random moments (every 5th of PostgreSQL too), each followed by a restart.
 * The moments are random, so which step each kill lands in varies from run to run; what must
 * hold does not: no money lost or spent twice, every committed indicium delivered to its mailer
 * exactly once with the committed bytes, every mailer able to go on without an operator, no key
 * left in progress, every restart working. `npm run soak` runs the same loop at length.
 */
describe('crash loop: the service killed at random moments while mailers work', function () {
  this.timeout(15 * 60_000);
  const root = process.env.VBI_TEST_ROOT as string;
  let dir: string;
  before(function () {
    // the service processes provision their own dev tokens on a free slot
    requireFreeSlots(this);
    dir = mkdtempSync(join(root, 'crash-loop-'));
    // as root the embedded server runs as 'postgres': let it through the run's private directory
    chmodSync(root, statSync(root).mode | 0o001);
  });
  after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  it('20 faults: nothing lost, nothing twice, every indicium delivered, every mailer goes on', async () => {
    const lines: string[] = [];
    const r = await runCrashLoop({ dir, faults: 20, clients: 2, seed: 17, log: (l) => lines.push(l) });
    expect(r.faults).to.equal(20);
    expect(r.violations, lines.join('\n')).to.deep.equal([]);
    expect({
      losses: r.losses, doubleSpends: r.doubleSpends, lockedOut: r.lockedOut, undelivered: r.undelivered, deliveredTwice: r.deliveredTwice,
      failedRestarts: r.failedRestarts, keysInProgress: r.keysInProgress, modulesOut: r.modulesOut,
    }).to.deep.equal({ losses: 0, doubleSpends: 0, lockedOut: 0, undelivered: 0, deliveredTwice: 0, failedRestarts: 0, keysInProgress: 0, modulesOut: 0 });
    // the loop did work between the kills (the final print of each mailer alone is 2)
    expect(r.printsAcknowledged).to.be.greaterThan(2);
  });
});
