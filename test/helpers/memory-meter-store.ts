import { randomUUID } from 'node:crypto';
import { vbiError } from '@vbi/core/errors';
import { IndiciumKeyAlgorithm } from '@vbi/server/hsm/hsm-module';
import { DispatchResult, PsdEngine } from '@vbi/server/module/psd-engine';
import { Mutex } from '@vbi/server/module/mutex';
import { openPackage } from '@vbi/server/module/package-seal';
import { createUncertifiedMeter } from '@vbi/server/module/commands/metergen-create';
import { certifyMeterKey } from '@vbi/server/module/commands/metergen-certify';
import { renewMeterKey } from '@vbi/server/module/commands/key-renewal';
import { signRequestWithKey, signRequestWithPackageKey } from '@vbi/server/module/commands/certification-request';
import { PsdPackage } from '@vbi/core/psd/psd-package';
import { MemoryMeterMap } from '@vbi/server/module/memory-meter-map';
import { CertificateStore, certificateRecord } from '@vbi/server/pki/certificate-store';
import {
  CertifyMeterRequest, CreateMeterRequest, CreatedMeter, KeyRenewalStore, MeterGenStore, PendingRenewal,
} from '@vbi/server/pki/meter-store';

interface PendingKey { renewalId: string; wrappedKey: Buffer; algorithm: IndiciumKeyAlgorithm }

/**
 * Reference implementation of the MeterGen storage ports over one PsdEngine, with the two
 * database rows kept in memory: each meter's sealed package, the module's checkpoint and the
 * meter map.
 * The PostgreSQL engine does the same with a row lock and one transaction per dispatch.
 * Pending renewal keys are kept in memory only: a crash loses them, and renewal starts over.
 */
export class MemoryMeterStore implements MeterGenStore, KeyRenewalStore {
  private readonly packages = new Map<string, Buffer>();
  private readonly pending = new Map<string, PendingKey>();
  private readonly lock = new Mutex();
  private readonly map = new MemoryMeterMap();

  constructor(private readonly engine: PsdEngine, private readonly certificates: CertificateStore, private checkpoint: Buffer | null = null) {}

  /** The sealed package as the "database" holds it (tests open it to check fields). */
  sealedPackage(meterId: string): Buffer | undefined {
    return this.packages.get(meterId);
  }

  async package(meterId: string): Promise<PsdPackage> {
    return openPackage(this.engine.hsm, this.row(meterId), meterId);
  }

  createUncertifiedMeter(req: CreateMeterRequest): Promise<CreatedMeter> {
    return this.lock.run(async () => {
      if (this.packages.has(req.meterId)) throw vbiError('BAD_REQUEST', `meter ${req.meterId} already exists`);
      const r = this.store(await this.engine.dispatch({
        meterId: req.meterId, sealedPackage: null, dbCheckpoint: this.checkpoint, map: this.map.view(req.meterId), execute: createUncertifiedMeter(req),
      }));
      return { meterId: req.meterId, publicKeySpki: r.publicKeySpki, algorithm: r.algorithm };
    });
  }

  signCertificationRequest(req: { meterId: string; requestInfo: Buffer }): Promise<Buffer> {
    return signRequestWithPackageKey(this.engine.hsm, { meterId: req.meterId, sealedPackage: this.row(req.meterId), requestInfo: req.requestInfo });
  }

  certifyMeter(req: CertifyMeterRequest): Promise<void> {
    return this.lock.run(async () => {
      const r = await this.engine.dispatch({
        meterId: req.meterId, sealedPackage: this.row(req.meterId), dbCheckpoint: this.checkpoint, map: this.map.view(req.meterId), execute: certifyMeterKey(req),
      });
      // One "transaction": the certificate becomes findable together with the certified package.
      await this.certificates.put(certificateRecord(req.meterId, req.certificateDer));
      this.store(r);
    });
  }

  discardMeter(meterId: string): Promise<void> {
    return this.lock.run(async () => {
      const sealed = this.packages.get(meterId);
      if (!sealed) return;
      const pkg = await openPackage(this.engine.hsm, sealed, meterId);
      if (pkg.indiciumCertSerial !== '') throw vbiError('METER_ALREADY_CERTIFIED', `meter ${meterId} is certified and cannot be discarded`);
      this.packages.delete(meterId);
      this.map.forget(meterId);
    });
  }

  async beginKeyRenewal(req: { meterId: string; algorithm: IndiciumKeyAlgorithm }): Promise<PendingRenewal> {
    const pkg = await this.package(req.meterId);
    if (pkg.indiciumCertSerial === '') throw vbiError('METER_NOT_CERTIFIED', `meter ${req.meterId} has no certified key to renew`);
    if (pkg.state === 'closed') throw vbiError('METER_CLOSED', `meter ${req.meterId} is closed`);
    const key = await this.engine.hsm.generateIndiciumKey({ algorithm: req.algorithm });
    const renewalId = randomUUID();
    this.pending.set(req.meterId, { renewalId, wrappedKey: key.wrappedKey, algorithm: req.algorithm });
    return { meterId: req.meterId, renewalId, publicKeySpki: key.publicKeySpki, algorithm: req.algorithm };
  }

  signRenewalRequest(req: { meterId: string; renewalId: string; requestInfo: Buffer }): Promise<Buffer> {
    const p = this.pendingKey(req.meterId, req.renewalId);
    return signRequestWithKey(this.engine.hsm, { meterId: req.meterId, wrappedKey: p.wrappedKey, algorithm: p.algorithm, requestInfo: req.requestInfo });
  }

  commitKeyRenewal(req: CertifyMeterRequest & { renewalId: string }): Promise<{ previousSerialHex: string }> {
    return this.lock.run(async () => {
      const p = this.pendingKey(req.meterId, req.renewalId);
      const r = await this.engine.dispatch({
        meterId: req.meterId, sealedPackage: this.row(req.meterId), dbCheckpoint: this.checkpoint, map: this.map.view(req.meterId),
        execute: renewMeterKey({ ...req, newWrappedKey: p.wrappedKey, algorithm: p.algorithm }),
      });
      await this.certificates.put(certificateRecord(req.meterId, req.certificateDer));
      this.store(r);
      this.pending.delete(req.meterId);
      return { previousSerialHex: r.result.previousSerialHex };
    });
  }

  async abandonKeyRenewal(req: { meterId: string; renewalId: string }): Promise<void> {
    if (this.pending.get(req.meterId)?.renewalId === req.renewalId) this.pending.delete(req.meterId);
  }

  private pendingKey(meterId: string, renewalId: string): PendingKey {
    const p = this.pending.get(meterId);
    if (!p || p.renewalId !== renewalId) throw vbiError('RENEWAL_NOT_FOUND', `meter ${meterId} has no pending renewal ${renewalId}`);
    return p;
  }

  private row(meterId: string): Buffer {
    const sealed = this.packages.get(meterId);
    if (!sealed) throw vbiError('UNKNOWN_METER', `no meter ${meterId}`);
    return sealed;
  }

  private store<R>(r: DispatchResult<R>): R {
    this.packages.set(r.package.meterId, r.sealedPackage);
    this.checkpoint = r.checkpoint;
    this.map.store(r);
    return r.result;
  }
}
