import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { vbiError, VbiError } from '@vbi/core/errors';
import { assertMills } from '@vbi/core/protocol/amounts';
import type { SessionItem } from '../module/commands/print-item';
import { BatchItem, BatchItemResult, printBatch } from '../module/commands/print-batch';
import type { Mailpiece } from '../module/commands/create-indicium';
import { redeliver, StoredIndicium } from '../module/commands/redeliver';
import { assembleIndicium } from '@vbi/core/indicium/layout';
import type { IdempotencyContext } from './idempotency-context';
import type { CorrectionAnswer, CorrectionBody, PrintAnswer, PrintBody, PrintItemAnswer, PrintItemBody, RedeliverBody } from '@vbi/core/protocol/bodies';
import type { OperationalRequest, OperationalResponse, Receipt } from '@vbi/core/protocol/messages';
import { computePostage } from '@vbi/core/rates/postage';
import { LiveSession, MailerCore } from './mailer-core';
import { storePrintBatch } from './print-batch-rows';
import { indiciaOfBatch, indiciaToRedeliver, indiciumOfMeter, priorBatch } from '../db/repositories/print-batches';

/**
 * Printing (docs/protocol.md 4): print and correction requests inside a live session, each one
 * module dispatch and one transaction; committed indicia answered again from the database, and
 * sent again to a session (`redeliver`).
 */
export class MailerPrinting {
  constructor(private readonly core: MailerCore) {}

  /**
   * A print batch in one module dispatch and one transaction (docs/protocol.md section 4): the
   * envelope, then every item while the session is live — dynamic password, counter, funds,
   * signature, encryption to the session key — and the package sealed once. Items after the
   * session ends are voided and not debited.
   *
   * Behind an Idempotency-Key a retry of a request whose run died or failed gets what it
   * committed from the database (the batch row and its indicia: the same bytes) once its
   * checkpoint is in the ring, or runs it if nothing committed.
   */
  async print(env: OperationalRequest<PrintBody>, idem?: IdempotencyContext): Promise<PrintAnswer> {
    const { sessionId, items } = env.body;
    const mailpieces = items.map((it) => this.mailpiece(it));
    return this.printRequest(env, 'print', idem, items.map((item, i) => ({ item, mailpiece: mailpieces[i] })), {
      details: { sessionId, items: items.length },
    });
  }

  /** Correction indicium (WO 99/41690) inside a session, for the additional postage: one item, the same way. */
  async correction(env: OperationalRequest<CorrectionBody>, idem?: IdempotencyContext): Promise<CorrectionAnswer> {
    const { sessionId, originalIndiciumId, item } = env.body;
    const mailpiece = this.mailpiece(item);
    const out = await this.printRequest(env, 'correction', idem, [{ item, mailpiece }], {
      result: { originalIndiciumId }, corrects: originalIndiciumId,
      before: async (trx, session) => {
        // refused before the authorisation commits: the request fails as a whole
        this.core.checkCounter(session, item.counter, item.clientTime);
        const original = await indiciumOfMeter(trx, originalIndiciumId, env.meterId);
        if (!original) throw vbiError('UNKNOWN_INDICIUM', `meter ${env.meterId} has no indicium ${originalIndiciumId}`);
      },
      details: { sessionId, originalIndiciumId },
    });
    return { authorization: out.authorization, item: out.items[0] };
  }

  /**
   * The print and correction requests: the authorisation, every item and the batch row (with the
   * answer and the items refused or voided) in one dispatch and one transaction. The steps hand
   * their values on: the session and the items checked outside the module (`before`), what the
   * module printed (`kept`), what the rows stored (`stored`: the answer's items).
   */
  private async printRequest(env: OperationalRequest<{ sessionId: string }>, kind: 'print' | 'correction', idem: IdempotencyContext | undefined,
    requested: Array<{ item: PrintItemBody; mailpiece: Mailpiece }>,
    extra: {
      result?: Record<string, unknown>; corrects?: number; details: Record<string, unknown>; before?: (trx: Knex.Transaction, session: LiveSession) => Promise<void>;
    },
  ): Promise<PrintAnswer> {
    const { sessionId } = env.body;
    const meterId = env.meterId;
    if (idem?.resumed) {
      // an earlier run of this request died or failed: if it committed, answer what it committed
      const prior = await priorBatch<OperationalResponse, Record<string, { status: 'voided' | 'failed'; reason: string }>>(this.core.db, { meterId, kind, idempotencyKey: idem.key, since: idem.since });
      if (prior) return this.storedBatch(prior);
    }
    const batchId = randomBytes(8).toString('hex');
    const { response: authorization, stored: items } = await this.core.operate(env, {
      type: 'inquiry', sideBySide: true,
      before: async (trx) => {
        const session = await this.core.liveSession(trx, sessionId, meterId, true);
        await extra.before?.(trx, session);
        return { session, items: this.batchItems(session, requested) };
      },
      operation: ({ session, items: batchItems }) => async (pkg, ctx) => {
        const run = printBatch({
          sessionId, type: kind === 'print' ? 'indicium' : 'correction', items: batchItems,
          wrappedSessionKey: session.wrapped_session_key, live: this.sessionLive(session),
        });
        return { ...(await run(pkg, ctx)), result: { batchId, items: requested.length, ...extra.result } };
      },
      after: (trx, { at, record, response, kept, input }) => this.storeBatch(trx, {
        batchId, meterId, kind, idem, sessionId, requested: requested.length, corrects: extra.corrects ?? null,
        at, record, response, results: kept ?? [], items: input.items,
      }),
      details: ({ items: batchItems }, results) => ({
        batchId, ...extra.details,
        printed: (results ?? []).filter((r) => r.printed).map((r) => ({
          index: r.index, counter: batchItems[r.index].item.counter, sequence: r.printed!.sequence, indicium: r.printed!.indicium.toString('base64'),
        })),
      }),
    });
    return { authorization, items, registers: authorization.registers };
  }

  /** The request's items as the module takes them; a used counter or a client clock off refuses an item before the module sees it. */
  private batchItems(session: LiveSession, requested: Array<{ item: PrintItemBody; mailpiece: Mailpiece }>): BatchItem[] {
    // counters rise strictly from the session's; the client clock within 5 minutes
    let counter = session.counter;
    return requested.map(({ item, mailpiece }) => {
      const it: SessionItem = { counter: item.counter, clientTime: item.clientTime, destinationZip: item.destinationZip, postage: item.postage, dynamicPassword: Buffer.from(item.dynamicPassword, 'base64') };
      try {
        this.core.checkCounter({ counter }, item.counter, item.clientTime);
      } catch (e) {
        return { item: it, mailpiece, refused: (e as VbiError).code };
      }
      counter = item.counter;
      return { item: it, mailpiece };
    });
  }

  /**
   * Whether the session is still live before each item (printBatch's `live`): a missed heartbeat
   * ends it, and the service counts each printed item as activity. A new one for every run of
   * the command: the module may run the request again from the start (its place in the group changed).
   */
  private sessionLive(session: LiveSession): (index: number) => Promise<string | null> {
    let lastSeen = session.last_seen_at.getTime();
    return async (index) => {
      if (index > 0) await this.core.opts.afterItem?.(index - 1);
      if (this.core.now() - lastSeen > session.timeout_ms) return 'SESSION_ENDED';
      lastSeen = Math.max(lastSeen, this.core.now());
      return null;
    };
  }

  /** The batch row, the printed indicia and the session's counter, in the dispatch's transaction; returns the answer's items. */
  private async storeBatch(trx: Knex.Transaction, req: {
    batchId: string; meterId: string; kind: 'print' | 'correction'; idem: IdempotencyContext | undefined; sessionId: string; requested: number;
    corrects: number | null; at: Date; record: { moduleSerial: string; seq: number }; response: OperationalResponse; results: BatchItemResult[]; items: BatchItem[];
  }): Promise<PrintItemAnswer[]> {
    const { results, items } = req;
    const printed = results.filter((r) => r.status === 'printed');
    const refused = Object.fromEntries(results.filter((r) => r.status !== 'printed').map((r) => [r.index, { status: r.status, reason: r.reason }]));
    const ended = results.find((r) => r.status === 'voided');
    const ids = await storePrintBatch(trx, {
      batch: { batchId: req.batchId, meterId: req.meterId, kind: req.kind, idempotencyKey: req.idem?.key ?? null, sessionId: req.sessionId, items: req.requested, answer: req.response, outcomes: refused },
      printed: printed.map((r) => ({
        index: r.index, sequence: r.printed!.sequence, postage: r.printed!.postage, data: r.printed!.data, signature: r.printed!.signature,
        counter: items[r.index].item.counter, encryptedIndicium: r.printed!.encryptedIndicium, receipt: r.printed!.receipt,
      })),
      indicium: { kind: req.kind === 'print' ? 'postage' : 'correction', corrects: req.corrects, moduleSerial: req.record.moduleSerial, checkpointSeq: req.record.seq, at: req.at },
      session: {
        counter: printed.length ? Math.max(...printed.map((r) => items[r.index].item.counter)) : null,
        lastSeenAt: new Date(this.core.now()),
        end: ended ? { reason: ended.reason === 'SESSION_ENDED' ? 'missed heartbeat' : ended.reason ?? null } : null,
      },
    });
    return results.map((r) => (r.printed
      ? { index: r.index, status: 'printed', indiciumId: ids.get(r.index), encryptedIndicium: r.printed.encryptedIndicium.toString('base64'), receipt: r.printed.receipt }
      : { index: r.index, status: r.status, reason: r.reason }));
  }

  /**
   * A committed print or correction request answered again from the database: the same bytes,
   * and only once its checkpoint record is in the module's ring (never released before that).
   */
  private async storedBatch(prior: { batch_id: string; answer: OperationalResponse; outcomes: Record<string, { status: 'voided' | 'failed'; reason: string }>; items: number }): Promise<PrintAnswer> {
    await this.core.ledger.ensureCheckpointed(prior.answer.receipt.moduleSerial, prior.answer.receipt.checkpointSeq);
    const done = new Map<number, PrintItemAnswer>();
    for (const [index, o] of Object.entries(prior.outcomes ?? {})) done.set(Number(index), { index: Number(index), status: o.status, reason: o.reason });
    const rows = await indiciaOfBatch<Receipt>(this.core.db, prior.batch_id);
    for (const r of rows) {
      done.set(r.item_index, { index: r.item_index, status: 'printed', indiciumId: Number(r.indicium_id), encryptedIndicium: r.encrypted_indicium.toString('base64'), receipt: r.receipt });
    }
    const items = Array.from({ length: prior.items }, (_, i) => done.get(i) ?? { index: i, status: 'voided' as const, reason: 'NOT_PRINTED' });
    return { authorization: prior.answer, items, registers: prior.answer.registers };
  }

  private mailpiece(it: PrintItemBody): Mailpiece {
    assertMills(it.postage, 'postage', { allowZero: false });
    if (!it.rate) return { destinationZip: it.destinationZip, rateCategory: 'FIX', rateTableId: 0, rateTableVersion: 0, itemType: it.itemType, dateOfMailing: it.dateOfMailing };
    const q = computePostage({ ...it.rate, at: new Date(this.core.now()) });
    if (q.postage !== it.postage) throw vbiError('POSTAGE_MISMATCH', `rate table ${q.rateTableName} prices this piece at ${q.postage} mills, not ${it.postage}`, { postage: q.postage });
    return { destinationZip: it.destinationZip, rateCategory: q.rateCategory, rateTableId: q.rateTableId, rateTableVersion: q.rateTableVersion, itemType: it.itemType, dateOfMailing: it.dateOfMailing };
  }

  /**
   * `redeliver`: committed indicia of the meter sent again, encrypted to the session that asks
   * (the same bytes as printed; nothing debited or signed again). Exactly one selector: a batch,
   * the Idempotency-Key of a print or correction request, or a range of piece numbers (the
   * indicia's `sequence`, the number printed on the label).
   */
  async redeliver(env: OperationalRequest<RedeliverBody>): Promise<OperationalResponse> {
    const b = env.body;
    const selectors = [b.batchId !== undefined, b.idempotencyKey !== undefined, b.fromSequence !== undefined].filter(Boolean).length;
    if (selectors !== 1 || (b.fromSequence === undefined) !== (b.toSequence === undefined)) {
      throw vbiError('VALIDATION_FAILED', 'redeliver takes exactly one of batchId, idempotencyKey, or fromSequence with toSequence', { in: 'body', errors: [{ path: '', message: 'exactly one selector' }] });
    }
    if (b.fromSequence !== undefined && (b.toSequence! < b.fromSequence || b.toSequence! - b.fromSequence >= 500)) {
      throw vbiError('VALIDATION_FAILED', 'a sequence range holds 1 to 500 sequences', { in: 'body', errors: [{ path: '/toSequence', message: 'fromSequence <= toSequence < fromSequence + 500' }] });
    }
    const done = await this.core.operate(env, {
      type: 'inquiry', details: () => ({ redeliver: { batchId: b.batchId, idempotencyKey: b.idempotencyKey, fromSequence: b.fromSequence, toSequence: b.toSequence } }),
      before: async (trx) => {
        const session = await this.core.liveSession(trx, b.sessionId, env.meterId, true);
        const rows = await indiciaToRedeliver<unknown>(trx, env.meterId, b);
        const found: StoredIndicium[] = rows.map((r) => ({
          indiciumId: Number(r.indicium_id), sequence: Number(r.sequence), kind: r.kind, postage: Number(r.postage), batchId: r.batch_id, index: r.item_index,
          indicium: assembleIndicium(r.data, r.signature), receipt: r.receipt,
        }));
        return { wrapped: session.wrapped_session_key, found };
      },
      operation: ({ wrapped, found }) => redeliver({ sessionId: b.sessionId, wrappedSessionKey: wrapped, indicia: found }),
    });
    return done.response;
  }
}
