import { vbiError } from '@vbi/core/errors';
import { ownModule } from '../../client/client-state';
import { moveOnceIfRefused } from '../../client/challenge-answer';
import type { HeartbeatAnswer, SessionOpened } from '../../client/wire';
import { encryptToModule, newSessionKey } from '../crypto/web-crypto';
import { codeOf, WebClientCore } from './web-client-core';
import { WebSession } from './web-session';

/** WebClient.openSession: session-open, moving to another module once if refused for it; heartbeats start. */
export async function openSession(core: WebClientCore, heartbeat: () => Promise<void>): Promise<WebSession> {
  if (core.current && !core.current.ended) throw vbiError('BAD_REQUEST', `session ${core.current.sessionId} is already open`);
  const open = async () => {
    const module = ownModule(core.file.state);
    const sk = await newSessionKey();
    try {
      const r = await core.operate<SessionOpened>('session-open', '/v1/sessions', {
        moduleSerial: module.serial, encryptedPasswordSecret: await encryptToModule(module, core.pwSecret), encryptedSessionKey: await encryptToModule(module, sk.raw),
      });
      return { r, key: sk.key };
    } finally {
      sk.raw.fill(0);
    }
  };
  const { r, key } = await moveOnceIfRefused(open, () => core.serial(() => core.moveNow()));
  const s = new WebSession(r.result.sessionId, key, r.result.heartbeatIntervalMs, r.result.timeoutMs);
  core.current = s;
  s.start(() => void heartbeat().catch(() => undefined));
  return s;
}

/** WebClient.heartbeat: one heartbeat with a dynamic password; a failure marks the link down, an ending code ends the session. */
export function heartbeat(core: WebClientCore): Promise<void> {
  return core.serial(async () => {
    const s = core.requireSession();
    const counter = s.nextCounter();
    const clientTime = Date.now();
    const password = await core.dynamicPassword({ sessionId: s.sessionId, counter, clientTime, purpose: 'heartbeat' });
    try {
      await core.http.post<HeartbeatAnswer>(`/v1/sessions/${encodeURIComponent(s.sessionId)}/heartbeat`, { meterId: core.meterId, counter, clientTime, dynamicPassword: password });
      s.linkError = undefined;
    } catch (e) {
      const code = codeOf(e);
      if (WebSession.ends(code)) s.end(code, (e as Error).message);
      else s.linkError = { code, message: (e as Error).message };
      throw e;
    } finally {
      core.onSessionChange?.(s);
    }
  });
}

/** WebClient.closeSession: session-close; a session the service already ended counts as closed. */
export async function closeSession(core: WebClientCore): Promise<void> {
  const s = core.current;
  if (!s) return;
  s.stop();
  try {
    if (!s.ended) await core.operate('session-close', `/v1/sessions/${encodeURIComponent(s.sessionId)}/close`, { sessionId: s.sessionId });
  } catch (e) {
    if (!WebSession.ends(codeOf(e))) throw e;
  } finally {
    s.end('SESSION_ENDED', 'session closed');
    core.current = undefined;
  }
}
