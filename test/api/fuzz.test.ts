import { expect } from 'chai';
import { join } from 'node:path';
import { runFuzzer } from '../fuzz/fuzzer';
import { loadErrorCatalogue } from '../fuzz/error-catalogue';
import { formatReport } from '../fuzz/report';
import { ServiceUnderTest, startServiceUnderTest } from '../fuzz/service-under-test';

/**
 * A short, seeded run of the HTTP fuzzer (test/fuzz/, docs/fuzz.md) against the real service:
 * every mutated request must be refused with a documented error, leak nothing, leave every
 * module in rotation and change nothing; afterwards the mailers are still served and the
 * journal verifies. Longer runs: `npm run fuzz -- --requests N --seed S`.
 */
describe('HTTP fuzzer (seeded, bounded)', function () {
  this.timeout(120_000);
  let svc: ServiceUnderTest | undefined;

  before(async () => {
    svc = await startServiceUnderTest();
  });
  after(async () => {
    await svc?.close();
  });

  it('800 mutated requests: all refused cleanly, nothing changed, the service still serves', async () => {
    const report = await runFuzzer(svc!.target, {
      seed: 20_260,
      requests: 800,
      seconds: 45,
      errorCatalogue: loadErrorCatalogue(join(__dirname, '..', '..', '..', 'docs', 'errors.md')),
    });
    expect(report.uncovered, 'routes of the OpenAPI document the fuzzer never reached').to.deep.equal([]);
    expect(report.findings.length, `\n${formatReport(report)}\n`).to.equal(0);
  });
});
