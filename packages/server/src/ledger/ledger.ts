import { isVbiError, vbiError } from '@vbi/core/errors';
import type { DispatchResult } from '../module/psd-engine';
import { postageValueDownload } from '../module/commands/postage-value-download';
import { assignMeter } from '../module/commands/assign-meter';
import { suspendMeter } from '../module/commands/suspend';
import { reactivateMeter } from '../module/commands/reactivate';
import { LicenceResult, licenseMeter, revokeLicence } from '../module/commands/licence';
import { fullRefund, withdraw } from '../module/commands/refund';
import { Registers } from '../module/commands/guards';
import { MASTER_PSD_ID, MasterRegisters } from '../module/commands/master-psd';
import type { AuditEvent } from '../module/audit';
import { assertMills } from '@vbi/core/protocol/amounts';
import { recordRefund } from './refund-rows';
import { CommandRunner } from './command-runner';
import { accountRow, insertAccount } from '../db/repositories/accounts';
import { insertRevocationReport, lockLicenceRequestStatus, markLicensed, revokeLicenceRequests } from '../db/repositories/licence-queue';
import { firstPooledMeter, meterRow, pooledMeterCount, setMeterAccount } from '../db/repositories/meters';
import { insertPoolPurchase, poolRowAll, purchaseByReference } from '../db/repositories/pool';
import { refundedSum } from '../db/repositories/refunds';

export type { LedgerOptions } from './command-runner';
export type { Execute, Step, StepResult } from './step';

/**
 * The ledger: the operator's and the vendor's commands on meters and on the pool (the master
 * PSD), each one step for the command runner (packages/server/src/ledger/command-runner.ts), which gives every
 * command one module dispatch in one database transaction, committed then checkpointed.
 */
export class Ledger extends CommandRunner {
  // --- the vendor's pool ----------------------------------------------------------------

  /**
   * Postage bought from the post enters the pool (master PSD), once per post's reference: the
   * same reference with the same amount is the same purchase (a retry: `created` false), with
   * another amount POOL_PURCHASE_CONFLICT. Every purchase is a command of the master PSD on a
   * module in rotation (a `pool-purchase` record): none in rotation is NO_MODULE, and nothing is
   * entered.
   */
  async purchaseFromPost(req: { amount: number; reference: string; operator?: string }): Promise<{ purchaseId: number; amount: number; reference: string; created: boolean }> {
    const amount = assertMills(req.amount);
    if (typeof req.reference !== 'string' || req.reference.trim().length === 0 || req.reference.length > 128) {
      throw vbiError('BAD_REQUEST', "the post's reference must be 1 to 128 characters");
    }
    const existing = async () => {
      const row = await purchaseByReference(this.db, req.reference);
      if (!row) return undefined;
      if (Number(row.amount) !== amount) {
        throw vbiError('POOL_PURCHASE_CONFLICT', `the post's reference ${req.reference} was entered with ${row.amount} mills`, { purchaseId: Number(row.purchase_id) });
      }
      return { purchaseId: Number(row.purchase_id), amount, reference: req.reference, created: false };
    };
    const before = await existing();
    if (before) return before;
    // a master PSD command (docs/ledger.md, "The master PSD"): the stock enters its sealed
    // descending register, with a checkpoint record and a journal row, in the purchase's own
    // transaction; conservation counts the master PSD's purchase records as the stock bought
    let purchaseId = 0;
    try {
      await this.run<MasterRegisters>({
        meterId: MASTER_PSD_ID, type: 'pool-purchase', master: { kind: 'purchase', amount },
        details: () => ({ kind: 'purchase', amount, reference: req.reference, operator: req.operator ?? null }),
        after: async (trx) => {
          purchaseId = Number(await insertPoolPurchase(trx, { amount, reference: req.reference, enteredBy: req.operator ?? null }));
        },
      });
    } catch (e) {
      // the same reference entered at the same moment by another request
      if ((e as { code?: string }).code === '23505') return (await existing())!;
      throw e;
    }
    return { purchaseId, amount, reference: req.reference, created: true };
  }

  async pool(): Promise<{ purchased: number; available: number; refundsPaid: number }> {
    const r = await poolRowAll(this.db);
    return { purchased: r.purchased, available: r.available, refundsPaid: r.refunds_paid };
  }

  // --- accounts and meters --------------------------------------------------------------

  async createAccount(req: { name: string; licensingZip: string }): Promise<number> {
    if (typeof req.name !== 'string' || !req.name.trim() || req.name.length > 200) throw vbiError('BAD_REQUEST', 'name is required (at most 200 characters)');
    if (typeof req.licensingZip !== 'string' || !/^\d{5}$/.test(req.licensingZip)) throw vbiError('BAD_REQUEST', 'licensing ZIP must be 5 digits');
    return insertAccount(this.db, { name: req.name.trim(), licensingZip: req.licensingZip });
  }

  /**
   * Puts a certified, unassigned MeterGen meter into service for an account (meter-assign).
   * Without `meterId`, takes the next one from the pool of certified, unassigned meters.
   */
  async assignMeter(req: { accountId: number; meterId?: string }): Promise<{ meterId: string; certSerial: string }> {
    const account = await accountRow(this.db, req.accountId);
    if (!account) throw vbiError('BAD_REQUEST', `no account ${req.accountId}`);
    for (let attempt = 0; attempt < 5; attempt++) {
      const meterId = req.meterId ?? (await firstPooledMeter(this.db))?.meter_id;
      if (!meterId) throw vbiError('NO_METER_AVAILABLE', 'the pool of certified, unassigned meters is empty (run MeterGen)');
      try {
        const out = await this.run({
          meterId, type: 'meter-assign', execute: assignMeter({ licensingZip: account.licensing_zip }),
          details: () => ({ accountId: req.accountId }),
          after: async (trx) => {
            await setMeterAccount(trx, meterId, req.accountId);
          },
        });
        return { meterId, certSerial: out.result.certSerial };
      } catch (e) {
        // another registration took the same pooled meter first: take the next one
        if (req.meterId || !isVbiError(e, 'BAD_REQUEST')) throw e;
      }
    }
    throw vbiError('NO_METER_AVAILABLE', 'no pooled meter could be assigned');
  }

  /** Certified, unassigned meters waiting in the pool (MeterGen keeps this above a threshold). */
  async unassignedMeters(): Promise<number> {
    const r = await pooledMeterCount(this.db);
    return Number(r?.n ?? 0);
  }

  // --- PSD commands -----------------------------------------------------------------------

  /** PostageValueDownload: pool → meter DR, never past max DR, pool registers in the same transaction. */
  async postageValueDownload(req: { meterId: string; amount: number }): Promise<Registers> {
    const amount = assertMills(req.amount);
    const out = await this.run({
      meterId: req.meterId, type: 'pvd', execute: postageValueDownload({ amount }),
      pool: () => ({ kind: 'download', amount, meterId: req.meterId }),
      details: () => ({ amount }),
    });
    return out.result;
  }

  /**
   * Suspend a meter — by the fraud policy, or by an operator (e.g. reported lost or stolen): its
   * DR is disabled until an operator reactivates it. Audited by the module that ran it.
   */
  async suspendMeter(req: { meterId: string; reason: string; operator?: string }): Promise<Registers> {
    const out = await this.run({ meterId: req.meterId, type: 'suspend', execute: suspendMeter(), details: () => ({ reason: req.reason, operator: req.operator }) });
    await this.audit(out, {
      kind: 'meter-suspended', reason: req.operator ? `suspended by operator ${req.operator}: ${req.reason}` : req.reason,
      details: { meterId: req.meterId, operator: req.operator ?? null },
    });
    return out.result;
  }

  /** An operator reactivates a suspended meter after reviewing its cases; audited with the operator's name. */
  async reactivateMeter(req: { meterId: string; operator: string; reason: string }): Promise<Registers> {
    const out = await this.run({
      meterId: req.meterId, type: 'reactivate', execute: reactivateMeter(), details: () => ({ operator: req.operator, reason: req.reason }),
    });
    await this.audit(out, { kind: 'meter-reactivated', reason: `reactivated by operator ${req.operator}: ${req.reason}`, details: { meterId: req.meterId, operator: req.operator } });
    return out.result;
  }

  /**
   * The licensing authority's licence into the meter's package (docs/licensing.md): the module's
   * `license` command. With `requestId`, the licence request row must still be pending and
   * becomes `licensed` in the same transaction; without one (a meter made without registration,
   * e.g. by the engine's tests) only the package changes.
   */
  async license(req: { meterId: string; licenceId: string; licensingZip: string; requestId?: number }): Promise<LicenceResult> {
    const out = await this.run({
      meterId: req.meterId, type: 'license', execute: licenseMeter({ licenceId: req.licenceId, licensingZip: req.licensingZip }),
      before: async (trx) => {
        if (req.requestId === undefined) return;
        const row = await lockLicenceRequestStatus(trx, req.requestId, req.meterId);
        if (row?.status !== 'pending') throw vbiError('BAD_REQUEST', `licence request ${req.requestId} of meter ${req.meterId} is ${row?.status ?? 'unknown'}, not pending`);
      },
      after: async (trx, _o, at) => {
        if (req.requestId === undefined) return;
        await markLicensed(trx, req.requestId, req.licenceId, at);
      },
      details: () => ({ licenceId: req.licenceId, licensingZip: req.licensingZip, requestId: req.requestId ?? null }),
    });
    return out.result;
  }

  /**
   * An operator revokes a meter's licence (docs/licensing.md): the module's `revoke-licence`
   * command; the meter prints nothing more. Its open or granted licence requests become `revoked`
   * in the same transaction, and a licence the authority granted (the package holds its number) is
   * queued there for reporting to the authority (licence_revocation_reports, sent by the licensing
   * pass); audited with the operator's name and reason. `authority`: the licensing authority
   * revoked the licence itself (its event feed, packages/server/src/licensing/authority-revocations.ts) — the same
   * command, audited as the authority's, and nothing is reported back to it.
   */
  async revokeLicence(req: { meterId: string; operator: string; reason: string; authority?: string }): Promise<LicenceResult> {
    const by = req.authority ? `the licensing authority (${req.authority})` : `operator ${req.operator}`;
    const out = await this.run({
      meterId: req.meterId, type: 'revoke-licence', execute: revokeLicence(),
      after: async (trx, o, at) => {
        await revokeLicenceRequests(trx, req.meterId, at, `revoked by ${by}: ${req.reason}`);
        // no licence number: never licensed by the authority (or grandfathered), nothing to report;
        // revoked by the authority itself: it knows
        if (o.package.licenceId && !req.authority) {
          await insertRevocationReport(trx, { meterId: req.meterId, licenceId: o.package.licenceId, reason: req.reason, revokedAt: at });
        }
      },
      details: () => ({ operator: req.operator, reason: req.reason, authority: req.authority ?? null }),
    });
    await this.audit(out, {
      kind: 'meter-licence-revoked', reason: `licence revoked by ${by}: ${req.reason}`,
      details: { meterId: req.meterId, operator: req.operator, licenceId: out.package.licenceId || null, authority: req.authority ?? null },
    });
    return out.result;
  }

  /** Records an event in the audit chain of the module that ran `out`'s command, naming its checkpoint. */
  private async audit(out: DispatchResult<unknown>, event: Omit<AuditEvent, 'at'>): Promise<void> {
    const engine = this.opts.engines.find((e) => e.hsm.serial === out.record.moduleSerial);
    await engine?.record({ ...event, at: new Date(out.record.time).toISOString(), details: { ...event.details, checkpointSeq: out.record.seq } });
  }

  /** Withdraw: close an empty meter (an operator's decision: audited with the operator's name). */
  async withdraw(req: { meterId: string; operator?: string; reason?: string }): Promise<Registers> {
    const out = await this.run({ meterId: req.meterId, type: 'withdraw', execute: withdraw(), details: () => ({ operator: req.operator, reason: req.reason }) });
    if (req.operator) {
      await this.audit(out, { kind: 'meter-withdrawn', reason: `withdrawn by operator ${req.operator}: ${req.reason ?? ''}`, details: { meterId: req.meterId, operator: req.operator } });
    }
    return out.result;
  }

  /**
   * An operator closes a meter and refunds what it still holds — the lost/stolen policy
   * (docs/api-conventions.md): a meter reported lost or stolen is suspended at once; after review,
   * this closes it for good (it never prints again) and its remaining DR goes back to the pool as
   * a full refund, recorded for the payout to the mailer. Audited with the operator's name.
   */
  async refundAndClose(req: { meterId: string; operator: string; reason: string }): Promise<Registers & { refunded: number; refundId: number }> {
    let refundId = 0;
    const out = await this.run({
      meterId: req.meterId, type: 'refund', execute: fullRefund(), details: () => ({ kind: 'full', operator: req.operator, reason: req.reason }),
      pool: (o) => ({ kind: 'return', amount: o.result.refunded, meterId: req.meterId }),
      after: async (trx, o, at) => {
        refundId = await recordRefund(trx, { meterId: req.meterId, kind: 'full', amount: o.result.refunded, reason: `operator ${req.operator}: ${req.reason}`, record: o.record, at });
      },
    });
    await this.audit(out, {
      kind: 'meter-refunded-closed', reason: `closed with its remaining ${out.result.refunded} mills refunded by operator ${req.operator}: ${req.reason}`,
      details: { meterId: req.meterId, operator: req.operator, refunded: out.result.refunded, refundId },
    });
    return { ...out.result, refundId };
  }

  /** Registers as the database's non-secret columns hold them (the sealed package is the authority). */
  async registers(meterId: string): Promise<Registers & { state: string; recordCounter: number }> {
    const m = await meterRow(this.db, meterId);
    if (!m) throw vbiError('UNKNOWN_METER', `no meter ${meterId}`);
    const refunded = await refundedSum(this.db, meterId);
    return {
      ascendingRegister: m.ascending_register, descendingRegister: m.descending_register,
      refundRegister: Number(refunded?.s ?? 0), state: m.state, recordCounter: m.record_counter,
    };
  }
}
