import { randomBytes } from 'node:crypto';
import { isVbiError, vbiError } from '@vbi/core/errors';
import { OperationalResponse, passwordSecret, rekeyProofInput } from '@vbi/core/protocol/messages';
import { encryptToModule, hmacSha256 } from './client-crypto';
import { ClientState, ownModule } from './client-state';
import type { ClientCore } from './client-core';
import { callsForMove } from './challenge-answer';
import { outOfStep } from './envelope';
import { NetworkError } from './http';

/** VbiClient.rekey: one re-key, and once more to another module after UNKNOWN_MODULE or NO_MODULE. */
export function rekey(core: ClientCore, req: { newPassword?: string }): Promise<{ userSecretsExpiry: string }> {
  return core.serial(async () => {
    if (core.keyFile.state.pendingRekey) await settleRekey(core);
    try {
      return await rekeyNow(core, req);
    } catch (e) {
      // only a refusal whose pending secrets were dropped: an unsettled re-key never moves
      if (!callsForMove(e) || core.keyFile.state.pendingRekey || !(await core.moveNow())) throw e;
      return rekeyNow(core, req);
    }
  });
}

/** One re-key to the key file's module (see rekey), inside the queue, with nothing pending. */
async function rekeyNow(core: ClientCore, req: { newPassword?: string }): Promise<{ userSecretsExpiry: string }> {
  const s = core.keyFile.state;
  const module = ownModule(s);
  const newHmk = randomBytes(32);
  const newPw = req.newPassword === undefined ? core.pwSecret : passwordSecret(req.newPassword, s.meterId);
  const proofNonce = randomBytes(32).toString('base64');
  await core.keyFile.save({
    ...s, pendingRekey: { hmk: newHmk.toString('base64'), passwordSecret: newPw.toString('base64'), ...(req.newPassword === undefined ? {} : { newPassword: req.newPassword }) },
  });
  const body = {
    moduleSerial: module.serial, encryptedPasswordSecret: encryptToModule(module, core.pwSecret),
    encryptedNewHmk: encryptToModule(module, newHmk), encryptedNewPasswordSecret: encryptToModule(module, newPw), proofNonce,
  };
  let r: OperationalResponse<{ newHmkProof: string; userSecretsExpiry: string }>;
  try {
    type Rekeyed = { newHmkProof: string; userSecretsExpiry: string };
    r = await core.accept<Rekeyed>(await core.send('rekey', '/v1/rekey', body), 'rekey').catch(async (e) => {
      if (!outOfStep(e)) throw e;
      // the module moved on (another device of this meter): in step again, then once more
      await core.resyncNow().catch(() => Promise.reject(e));
      return core.accept<Rekeyed>(await core.send('rekey', '/v1/rekey', body), 'rekey');
    });
  } catch (e) {
    if (e instanceof NetworkError) {
      if (await settleRekey(core)) return { userSecretsExpiry: 'unknown (the answer was lost; the new secrets are in use)' };
      throw e;
    }
    // refused: the module kept the old secrets
    const { pendingRekey: _dropped, ...rest } = core.keyFile.state;
    await core.keyFile.save(rest);
    throw e;
  }
  const proof = Buffer.from(String(r.result?.newHmkProof ?? ''), 'base64');
  if (!hmacSha256(newHmk, rekeyProofInput(s.meterId, proofNonce)).equals(proof)) {
    throw vbiError('BAD_MAC', 'the module did not prove the new HMK: the key file keeps both until recover() settles it');
  }
  await adoptRekey(core);
  return { userSecretsExpiry: r.result.userSecretsExpiry };
}

/**
 * A re-key whose outcome is unknown, settled by resync. First with the old HMK: if the module
 * answers to it, the re-key did not commit — and since that resync issued a new challenge, a
 * re-key still on its way can no longer commit (STALE_CHALLENGE) — so the pending secrets are
 * dropped. If the module refuses the old HMK (BAD_MAC), the re-key committed: resync with the
 * new one and adopt it. Returns whether the new secrets are in use.
 */
export async function settleRekey(core: ClientCore): Promise<boolean> {
  const pending = core.keyFile.state.pendingRekey;
  if (!pending) return false;
  try {
    await core.resyncNow();
    const { pendingRekey: _dropped, ...rest } = core.keyFile.state;
    await core.keyFile.save(rest);
    return false;
  } catch (e) {
    if (!isVbiError(e, 'BAD_MAC')) throw e; // the link again: still unknown, still pending
  }
  const old = core.hmk;
  core.hmk = Buffer.from(pending.hmk, 'base64');
  try {
    await core.resyncNow();
  } catch (e) {
    core.hmk = old;
    throw e;
  }
  await adoptRekey(core);
  return true;
}

/** The pending secrets become the key file's own (under the new password, if one was chosen). */
async function adoptRekey(core: ClientCore): Promise<void> {
  const { pendingRekey: pending, ...rest } = core.keyFile.state;
  if (!pending) return;
  core.hmk = Buffer.from(pending.hmk, 'base64');
  core.pwSecret = Buffer.from(pending.passwordSecret, 'base64');
  const state: ClientState = { ...rest, hmk: pending.hmk };
  if (pending.newPassword !== undefined) await core.keyFile.saveUnderPassword(pending.newPassword, state);
  else await core.keyFile.save(state);
}
