import { installApprovers } from '@vbi/server/hsm/officer-keys';
import { createOfficerKey, signApproval } from '@vbi/server/ceremony/officers';
import { Approval, ReinstatementStatement } from '@vbi/server/ledger/officer-approval';
import { reinstatementStatement } from '@vbi/server/ledger/reinstatement';
import { PsdEngine } from '@vbi/server/module/psd-engine';
import { TEST_SO_PIN, TEST_USER_PIN, provisionToken, testLibrary, uniqueLabel } from './hsm';

/**
 * The test run's officers: two, each with an approval key in a token of their own (kept for the
 * whole run), as the key ceremony creates them (docs/key-ceremony.md).
 */
export interface TestOfficer { name: string; label: string; spki: Buffer }

let officers: Promise<TestOfficer[]> | undefined;

export function testOfficers(): Promise<TestOfficer[]> {
  officers ??= (async () => {
    const out: TestOfficer[] = [];
    for (const name of ['Alice Officer', 'Bob Officer']) {
      const label = uniqueLabel('officer');
      await provisionToken(label, 'aes', false, { keep: true });
      out.push({ name, label, spki: await createOfficerKey({ library: testLibrary(), label, soPin: TEST_SO_PIN, userPin: TEST_USER_PIN }) });
    }
    return out;
  })();
  return officers;
}

/** The module token's SO installs the run's officers as its approvers, `threshold` of them needed (default all). */
export async function installTestOfficers(moduleLabel: string, threshold?: number): Promise<TestOfficer[]> {
  const all = await testOfficers();
  await installApprovers({ library: testLibrary(), label: moduleLabel, soPin: TEST_SO_PIN, threshold: threshold ?? all.length, officers: all.map((o) => ({ name: o.name, spki: o.spki })) });
  return all;
}

/** Each of the run's officers (or the first `count`) signs the statement in their own token. */
export async function approvals(statement: ReinstatementStatement, count?: number): Promise<Approval[]> {
  const all = (await testOfficers()).slice(0, count);
  const out: Approval[] = [];
  for (const o of all) out.push(await signApproval({ library: testLibrary(), label: o.label, userPin: TEST_USER_PIN, officer: o.name, statement }));
  return out;
}

/** Approvals of the statement for reinstating `engine`'s module with `acceptCheckpoint`, by every officer. */
export function approvalsFor(engine: PsdEngine, acceptCheckpoint: Buffer | null, count?: number): Promise<Approval[]> {
  return approvals(reinstatementStatement(engine, acceptCheckpoint), count);
}
