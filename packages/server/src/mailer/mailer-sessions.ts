import { randomBytes } from 'node:crypto';
import { vbiError } from '@vbi/core/errors';
import { rekey } from '../module/commands/rekey';
import { closeSession, heartbeatCheck, inquiry, openSession } from '../module/commands/mailer-operations';
import { resync } from '../module/commands/resync';
import type { HistoryBody, RekeyBody, SessionCloseBody, SessionOpenBody } from '@vbi/core/protocol/bodies';
import type { MeterTransaction, OperationalRequest, OperationalResponse, Receipt, ResyncRequest, ResyncResponse } from '@vbi/core/protocol/messages';
import { DEFAULT_USER_SECRETS_LIFETIME_MS, MailerCore } from './mailer-core';
import { indiciaOfRecords, meterTransactionsAfter, newestJournalOfMeter } from '../db/repositories/journal';
import { closeSessionByClient, insertSession, raiseSessionCounter } from '../db/repositories/sessions';

/**
 * Sessions and the meter's own state (docs/protocol.md 2, 5, 6, 7): balance and history, the
 * continuous session with its dynamic-password heartbeats (the secure on-line printing claims),
 * re-key, and the resync exchange.
 */
export class MailerSessions {
  constructor(private readonly core: MailerCore) {}

  balance(env: OperationalRequest): Promise<OperationalResponse> {
    return this.core.operate(env, { type: 'inquiry', operation: () => inquiry }).then((d) => d.response);
  }

  /** The meter's journal, newest first (read in the dispatch's transaction). */
  async history(env: OperationalRequest<HistoryBody>): Promise<OperationalResponse> {
    const done = await this.core.operate(env, {
      type: 'inquiry',
      before: async (trx) => {
        const rows = await newestJournalOfMeter(trx, env.meterId, env.body.limit ?? 50);
        return rows.map((r) => ({ time: r.created_at.toISOString(), type: r.tx_type, amount: r.amount, ascending: r.ascending_register, descending: r.descending_register }));
      },
      operation: (entries) => async (pkg, ctx) => ({ ...(await inquiry(pkg, ctx)), result: { entries } }),
    });
    return done.response;
  }

  /** Session open: the password checked in the token, the client's session key taken in wrapped for the session row. */
  async openSession(env: OperationalRequest<SessionOpenBody>): Promise<OperationalResponse> {
    const sessionId = randomBytes(16).toString('hex');
    const done = await this.core.operate(env, {
      type: 'session', moduleSerial: env.body.moduleSerial, details: () => ({ sessionId }),
      operation: () => openSession({
        sessionId, heartbeatIntervalMs: this.core.heartbeatIntervalMs, timeoutMs: this.core.sessionTimeoutMs,
        encryptedPasswordSecret: Buffer.from(env.body.encryptedPasswordSecret, 'base64'), encryptedSessionKey: Buffer.from(env.body.encryptedSessionKey, 'base64'),
      }),
      after: async (trx, { at, kept }) => {
        await insertSession(trx, {
          sessionId, meterId: env.meterId, moduleSerial: env.body.moduleSerial, wrappedSessionKey: kept,
          heartbeatMs: this.core.heartbeatIntervalMs, timeoutMs: this.core.sessionTimeoutMs, openedAt: at, lastSeenAt: new Date(this.core.now()),
        });
      },
    });
    return done.response;
  }

  async closeSession(env: OperationalRequest<SessionCloseBody>): Promise<OperationalResponse> {
    const done = await this.core.operate(env, {
      type: 'session', details: () => ({ sessionId: env.body.sessionId }),
      operation: () => closeSession({ sessionId: env.body.sessionId }),
      before: async (trx) => {
        await this.core.liveSession(trx, env.body.sessionId, env.meterId, true);
      },
      after: async (trx) => {
        await closeSessionByClient(trx, env.body.sessionId);
      },
    });
    return done.response;
  }

  /**
   * Re-key (docs/protocol.md 7): a new HMK and password for the meter, on the module whose
   * transport key the client encrypted them to; allowed after the user secrets expired.
   */
  async rekey(env: OperationalRequest<RekeyBody>): Promise<OperationalResponse> {
    const done = await this.core.operate(env, {
      type: 'rekey', moduleSerial: env.body.moduleSerial,
      operation: () => rekey({
        encryptedPasswordSecret: Buffer.from(env.body.encryptedPasswordSecret, 'base64'),
        encryptedNewHmk: Buffer.from(env.body.encryptedNewHmk, 'base64'),
        encryptedNewPasswordSecret: Buffer.from(env.body.encryptedNewPasswordSecret, 'base64'),
        proofNonce: env.body.proofNonce,
        userSecretsLifetimeMs: this.core.opts.userSecretsLifetimeMs ?? DEFAULT_USER_SECRETS_LIFETIME_MS,
      }),
    });
    return done.response;
  }

  /**
   * Heartbeat: the dynamic password is verified with the HMK inside a module (no package
   * change); a bad one ends the session.
   */
  async heartbeat(req: { sessionId: string; meterId: string; counter: number; clientTime: number; dynamicPassword: string }): Promise<{ counter: number; expiresAt: string }> {
    const session = await this.core.liveSession(this.core.db, req.sessionId, req.meterId);
    this.core.checkCounter(session, req.counter, req.clientTime);
    const ok = await this.core.ledger.inspect(req.meterId, heartbeatCheck(req));
    if (!ok) {
      await this.core.endSession(req.sessionId, 'bad dynamic password');
      throw vbiError('BAD_DYNAMIC_PASSWORD', 'heartbeat dynamic password does not verify; the session is ended');
    }
    const now = new Date(this.core.now());
    // counter only moves forward, even with concurrent heartbeats and prints
    const n = await raiseSessionCounter(this.core.db, req.sessionId, req.counter, now);
    if (n === 0) throw vbiError('STALE_CHALLENGE', 'heartbeat counter already used');
    return { counter: req.counter, expiresAt: new Date(now.getTime() + session.timeout_ms).toISOString() };
  }

  /**
   * The resync exchange: a client that lost its challenge or register copy proves the HMK over a
   * fresh nonce; one dispatch issues the next challenge and answers with the registers and the
   * meter's transactions after `afterSequence` (read in the same transaction), signed by the
   * module identity key.
   */
  async resync(req: ResyncRequest): Promise<ResyncResponse> {
    const limit = 200;
    const out = await this.core.ledger.run<ResyncResponse, { list: MeterTransaction[]; more: boolean }>({
      meterId: req.meterId, type: 'inquiry',
      before: async (trx) => {
        const rows = await meterTransactionsAfter(trx, req.meterId, req.afterSequence, limit + 1);
        const shown = rows.slice(0, limit);
        // the indicia each record printed (a print request signs all its items in one record)
        const printed = shown.length === 0 ? [] : await indiciaOfRecords(trx, req.meterId, shown.map((r) => [r.module_serial, r.checkpoint_seq]));
        const byRecord = new Map<string, NonNullable<MeterTransaction['indicia']>>();
        for (const i of printed) {
          const key = `${i.module_serial}#${i.checkpoint_seq}`;
          const list = byRecord.get(key) ?? [];
          list.push({ indiciumId: Number(i.indicium_id), sequence: Number(i.sequence), ...(i.batch_id !== null ? { batchId: i.batch_id, index: i.item_index as number } : {}) });
          byRecord.set(key, list);
        }
        return {
          more: rows.length > limit,
          list: shown.map((r) => {
            const indicia = byRecord.get(`${r.module_serial}#${r.checkpoint_seq}`);
            return {
              sequence: Number(r.sequence), type: r.tx_type, amount: Number(r.amount), ascending: Number(r.ascending_register), descending: Number(r.descending_register),
              time: r.created_at.toISOString(),
              ...(r.receipt ? { receipt: r.receipt as Receipt } : {}),
              ...(indicia ? { indicia } : {}),
            };
          }),
        };
      },
      execute: (pkg, ctx, listed) => resync(req, listed)(pkg, ctx),
      details: () => ({ op: 'resync', afterSequence: req.afterSequence }),
    });
    return out.result;
  }
}
