import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { requireClone, requireFreeSlots } from '../helpers/hsm';
import type { OpsTranscript } from '@vbi/server/ops/transcript';

/**
 * The disaster-recovery drill (`npm run drill`, docs/operations.md "The drill") as an operator
 * runs it: its own scratch deployment, the four losses one after another, each recovered through
 * the operator's programs only. The drill checks the outcome itself after each recovery (registers
 * as the mailers' key files hold them, exactly the indicia they received, the pool, conservation,
 * the journal, printing again) and exits 1 at the first check that fails; this test runs the
 * program and reads what it left: its transcript and the transcripts of every script it ran.
 */
describe('the disaster-recovery drill (npm run drill): four losses, recovered through the scripts only', function () {
  this.timeout(15 * 60_000);
  let dir: string;
  let run: { code: number | null; stdout: string; stderr: string };

  before(async function () {
    requireFreeSlots(this); // its own SoftHSM2 token directory: init-token, clone, softhsm2-util
    requireClone(this);
    dir = mkdtempSync(join(process.env.VBI_TEST_ROOT as string, 'drill-'));
    run = await new Promise((resolve) => {
      execFile(process.execPath, [require.resolve('@vbi/server/bin/drill'), '--dir', dir], { maxBuffer: 64 << 20 },
        (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
    });
  });

  after(() => {
    if (dir && run?.code === 0) rmSync(dir, { recursive: true, force: true });
  });

  it('passes every check of all four scenarios', () => {
    const transcript = readFileSync(join(dir, 'drill-transcript.md'), 'utf8');
    expect(run.code, transcript.slice(-3000)).to.equal(0);
    expect(transcript).to.match(/\*\*Drill passed\*\*: \d+ checks/);
    expect(transcript).not.to.match(/^- FAIL /m);
    const sections = transcript.match(/^## .*$/gm) ?? [];
    expect(sections.map((s) => s.slice(3, 5))).to.include.members(['1.', '2.', '3.', '4.']);
    // each scenario ends with the mailers' holdings checked against the database
    for (const n of ['1', '2', '3', '4']) {
      const part = transcript.split(/^## /m).find((s) => s.startsWith(`${n}.`)) ?? '';
      expect(part, `scenario ${n}`).to.match(/registers are what its key file holds/);
      expect(part, `scenario ${n}`).to.match(/exactly the indicia it received are in the database/);
      expect(part, `scenario ${n}`).to.match(/conservation/);
    }
  });

  it('every backup and recovery script left its transcript; the takeovers needed two officers', () => {
    const ops = readdirSync(join(dir, 'var', 'transcripts')).map((f) => JSON.parse(readFileSync(join(dir, 'var', 'transcripts', f), 'utf8')) as OpsTranscript);
    const count = (p: string) => ops.filter((t) => t.procedure === p).length;
    expect(count('backup')).to.equal(1);
    expect(count('restore')).to.equal(3); // scenarios 1, 2 and 4
    expect(count('journal-replay')).to.equal(2); // scenarios 2 and 4
    for (const t of ops) expect(t.exitCode, `${t.procedure} ${t.argv.join(' ')}`).to.equal(0);
    const replays = ops.filter((t) => t.procedure === 'journal-replay').map((t) => t.result as { replayed: number; modules: Array<{ state: string }> });
    for (const r of replays) expect(r.replayed).to.be.greaterThan(0);
    expect(replays[1].modules.map((m) => m.state).sort()).to.deep.equal(['in-step', 'not-configured', 'not-configured']);

    const ceremony = readdirSync(join(dir, 'var', 'ceremony')).map((f) => JSON.parse(readFileSync(join(dir, 'var', 'ceremony', f), 'utf8')) as { ceremony: string; result: { audit?: { details?: { approvedBy?: string[] } } } });
    const reinstated = ceremony.filter((t) => t.ceremony === 'reinstate');
    expect(reinstated).to.have.length(2); // scenarios 3 and 4; the attempt with one approval wrote none
    for (const t of reinstated) expect(t.result.audit?.details?.approvedBy).to.deep.equal(['Alice', 'Bob']);
  });
});
