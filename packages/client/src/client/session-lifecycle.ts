import { randomBytes } from 'node:crypto';
import { vbiError } from '@vbi/core/errors';
import { encryptToModule } from './client-crypto';
import { ownModule } from './client-state';
import type { ClientCore } from './client-core';
import { moveOnceIfRefused } from './challenge-answer';
import { dynamicPassword } from './dynamic-password';
import { ClientSession, endsSession } from './session';
import type { HeartbeatAnswer, SessionOpened } from './wire';

/** VbiClient.openSession: session-open (moving to another module once if refused for it), heartbeats, then recovery. */
export async function openSession(core: ClientCore, opts: { heartbeats?: boolean }): Promise<ClientSession> {
  if (core.current && !core.current.ended) throw vbiError('BAD_REQUEST', `session ${core.current.sessionId} is already open`);
  const open = async () => {
    const s = core.keyFile.state;
    const module = ownModule(s);
    const sessionKey = randomBytes(32);
    // a lost answer leaves an unused session on the service, which times out: open another
    const r = await core.operate<SessionOpened>('session-open', '/v1/sessions', {
      moduleSerial: module.serial,
      encryptedPasswordSecret: encryptToModule(module, core.pwSecret),
      encryptedSessionKey: encryptToModule(module, sessionKey),
    }, { lostAnswer: 'repeat' });
    return { r, sessionKey };
  };
  const { r, sessionKey } = await moveOnceIfRefused(open, () => core.serial(() => core.moveNow()));
  const { sessionId, heartbeatIntervalMs, timeoutMs } = r.result;
  const session = new ClientSession({
    sessionId, sessionKey, heartbeatIntervalMs, timeoutMs,
    beat: async (counter) => {
      await sendHeartbeat(core, sessionId, counter);
    },
  });
  core.current = session;
  if (opts.heartbeats !== false) session.startHeartbeats();
  if (core.keyFile.state.pending?.length) {
    await session.exclusive(() => core.serial(() => core.recoverPending())).catch(() => undefined);
  }
  return session;
}

/** VbiClient.closeSession: session-close; a session the service already ended counts as closed. */
export async function closeSession(core: ClientCore): Promise<void> {
  const session = core.current;
  if (!session) return;
  session.stopHeartbeats();
  try {
    if (!session.ended) {
      await session.exclusive(() => core.operate('session-close', `/v1/sessions/${encodeURIComponent(session.sessionId)}/close`, { sessionId: session.sessionId }, { lostAnswer: 'repeat' }));
    }
  } catch (e) {
    if (!endsSession(e)) throw e;
  } finally {
    session.end(new Error('session closed'));
    if (core.current === session) core.current = undefined;
  }
}

async function sendHeartbeat(core: ClientCore, sessionId: string, counter: number): Promise<HeartbeatAnswer> {
  const clientTime = core.clock();
  return core.http.post<HeartbeatAnswer>(`/v1/sessions/${encodeURIComponent(sessionId)}/heartbeat`, {
    meterId: core.meterId, counter, clientTime,
    dynamicPassword: dynamicPassword(core.hmk, { meterId: core.meterId, sessionId, counter, clientTime, purpose: 'heartbeat' }),
  });
}
