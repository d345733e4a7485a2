import { STATUS_CODES, Server, createServer as createHttpServer } from 'node:http';
import type { Duplex } from 'node:stream';
import { errorBody } from './api/http-errors';
import { purgeIdempotencyKeys } from './api/idempotency';
import { vbiError } from '@vbi/core/errors';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { Service } from './service';
import { MailerOptions, MailerService } from './mailer/mailer-service';
import { ensureModuleCertificates } from './mailer/module-directory';
import { createApp } from './api/app';
import { PgMeterStore } from './ledger/pg-meter-store';
import { IndiciumVerifier } from '@vbi/core/indicium/verify';
import { PgScanStore } from './indicium/pg-scan-store';
import { fraudReportPolicy } from './indicium/fraud-report';
import { MeterGen } from './pki/metergen';
import { certifyModuleIdentity } from './pki/module-identity';
import { CaClient } from './pki/ca-client';
import { RequestCountersigner } from './pki/vendor-ra';
import { TrustStore } from './pki/trust-store';
import { keepMeterPool } from './ledger/meter-pool';
import { meterIdPrefix } from './config/shard';
import { ShardOwners } from './ledger/shard-owners';
import { RenewalRun, renewDueKeys } from './pki/key-renewal-schedule';
import { writeMissingReports } from './reports/report-file';
import { Mutex } from './module/mutex';
import { PaymentProvider } from './payments/payment-provider';
import { LicensingAuthority } from './licensing/licensing-authority';
import { LicenceQueue } from './licensing/licence-queue';
import { RevocationReports } from './licensing/revocation-reports';
import { AuthorityRevocations } from './licensing/authority-revocations';

export interface ServerDeps {
  service: Service;
  /** MeterGen over this service's store (dev: DevPki.metergen; production: createMeterGen). */
  metergen: (store: PgMeterStore) => MeterGen;
  /** For module identity certificates: the same CA, RA and trust anchor as MeterGen's. */
  pki: { ca: CaClient; ra: RequestCountersigner; trust: TrustStore; intermediates: Buffer[] };
  payments: PaymentProvider;
  /** The postal licensing authority (docs/licensing.md): the dev authority, or the HTTP adapter. */
  licensing: LicensingAuthority;
  /** How often the licensing pass runs besides at start (default LICENSING_EVERY_MS); 0: only at start and on licensingPass() (tests that drive it). */
  licensingEveryMs?: number;
  mailer?: Partial<Omit<MailerOptions, 'ledger' | 'payments' | 'licensing'>>;
  /** Certified, unassigned meters kept ready for registrations. */
  meterPool?: { minimum: number; maxDescendingRegister: number };
  host?: string;
  port?: number;
  /**
   * The URL other processes send clients of this shard to (VBI_PUBLIC_URL): this process's own
   * address unless a proxy or TLS terminator sits in front of it.
   */
  publicUrl?: string;
  /** Express's `trust proxy` (VBI_TRUST_PROXY): which peers' X-Forwarded-For names the client (rate limits); `loopback` behind the front. */
  trustProxy?: string;
  /** PEM certificate chain and key: serve HTTPS instead of HTTP. */
  tls?: { cert: Buffer; key: Buffer };
  authRateLimit?: { limit: number; windowMs: number; clock?: () => number };
  log?: (line: string) => void;
  /** Idempotency keys are kept this long (default 30 days; answered or not) and purged every hour. */
  idempotencyRetentionMs?: number;
  /** Renew indicium keys ahead of expiry on a timer (packages/server/src/pki/key-renewal-schedule.ts); off when unset. */
  keyRenewal?: { renewBeforeMs: number; intervalMs: number };
  /** Write each complete day's signed report into `dir` (packages/server/src/reports/report-file.ts), at start and every `intervalMs`; off when unset. */
  reports?: { dir: string; intervalMs: number };
}

export const IDEMPOTENCY_RETENTION_MS = 30 * 86_400_000;
const IDEMPOTENCY_PURGE_EVERY_MS = 3_600_000;
const CAPTURE_EVERY_MS = 300_000;
const LICENSING_EVERY_MS = 60_000;

export interface RunningServer {
  url: string;
  app: import('express').Express;
  api: import('./api/openapi').ApiRegistry;
  mailer: MailerService;
  metergen: MeterGen;
  store: PgMeterStore;
  /** One purge of answered idempotency keys older than the retention (the hourly timer's step). */
  purgeIdempotencyKeys(): Promise<number>;
  /** One pass of the key renewal schedule (the timer's step; `renewBeforeMs` defaults to the schedule's, or 30 days). */
  renewDueKeys(renewBeforeMs?: number): Promise<RenewalRun>;
  /** One capture pass: applied payments not yet captured at the processor (every CAPTURE_EVERY_MS and at start). */
  capturePayments(): Promise<{ captured: number; failed: number }>;
  /** One payout pass: refunds still due paid back through the processor (with the capture pass). */
  payRefunds(): Promise<{ paid: number; unpaid: number; failed: number }>;
  /**
   * One licensing pass (every LICENSING_EVERY_MS and at start): pending licence requests asked of
   * the authority again, then the revocations not yet reported to it reported, then the
   * authority's own revocations read from its event feed and applied (`fromAuthority`).
   */
  licensingPass(): Promise<{
    licensed: number; refused: number; pending: number; revocations: { reported: number; unreported: number; unknown: number }; fromAuthority: { revoked: number; unknown: number };
  }>;
  /** One pass of the report schedule: the dates whose report it wrote. */
  writeMissingReports(): Promise<string[]>;
  close(): Promise<void>;
}

/**
 * The mailer-facing HTTP service on top of a running Service: module identity certificates,
 * the MeterGen pool, the verifier with duplicate detection and the fraud policy, the API.
 */
export async function startServer(deps: ServerDeps): Promise<RunningServer> {
  const { service } = deps;
  const ledger = service.ledger;
  const store = new PgMeterStore(ledger);
  const metergen = deps.metergen(store);
  await ensureModuleCertificates({
    db: service.db.knex, modules: ledger.modules(),
    certify: (m) => certifyModuleIdentity({ module: m, ca: deps.pki.ca, ra: deps.pki.ra, trustRoot: deps.pki.trust.current() }),
  });
  if (deps.meterPool) await keepMeterPool({ ledger, metergen, prefix: meterIdPrefix(service.config.shard), ...deps.meterPool });
  // Pool refills run one at a time; registrations wait for a running one when the pool is empty.
  const poolLock = new Mutex();
  const replenishMeters = deps.meterPool
    ? () => poolLock.run(async () => { await keepMeterPool({ ledger, metergen, prefix: meterIdPrefix(service.config.shard), ...deps.meterPool! }); })
    : undefined;
  const licences = new LicenceQueue({ ledger, authority: deps.licensing, log: deps.log });
  const revocationReports = new RevocationReports({ db: ledger.db, authority: deps.licensing, log: deps.log });
  const authorityRevocations = new AuthorityRevocations({
    db: ledger.db, authority: deps.licensing, log: deps.log,
    revoke: async (r) => { await ledger.revokeLicence({ ...r, operator: `licensing authority (${deps.licensing.name})`, authority: deps.licensing.name }); },
  });
  const mailer = new MailerService({
    ledger, payments: deps.payments, oaepHash: service.config.hsm.oaepHash, spoilageLimitBps: service.config.spoilageLimitBps,
    replenishMeters, log: deps.log, licensing: licences, ...deps.mailer,
  });
  const checks = {
    trustAnchors: deps.pki.trust.anchors(),
    intermediates: deps.pki.intermediates,
    certificates: { bySerial: async (s: string) => (await store.certificates.getBySerial(s))?.certificateDer ?? null },
  };
  const verifier = new IndiciumVerifier({
    ...checks,
    scanStore: new PgScanStore(service.db.knex),
    onDuplicate: fraudReportPolicy({ knex: service.db.knex, policy: service.config.suspension, suspendMeter: async (r) => { await ledger.suspendMeter(r); } }),
  });
  const checker = new IndiciumVerifier(checks);
  const directory = service.config.directoryUrl ? await ShardOwners.at(service.config.directoryUrl) : undefined;
  const owners = directory ?? new ShardOwners(service.db.knex);
  let publicUrl = deps.publicUrl ?? '';
  const { app, api } = createApp({ db: service.db.knex, mailer, verifier, checker, status: () => service.status(), authRateLimit: deps.authRateLimit, log: deps.log,
    shard: { mine: service.config.shard, lost: () => ledger.lostShard(), self: () => publicUrl, ownerUrl: (n) => owners.urlOf(n) }, trustProxy: deps.trustProxy,
    checkout: { provider: deps.payments.name, unitMills: deps.payments.unitMills, ...deps.payments.checkout },
    operator: { reactivateMeter: (r) => ledger.reactivateMeter(r), suspendMeter: (r) => ledger.suspendMeter(r), withdrawMeter: (r) => ledger.withdraw(r), refundAndClose: (r) => mailer.refundAndClose(r),
      revokeLicence: (r) => ledger.revokeLicence(r), purchaseStock: (r) => ledger.purchaseFromPost(r), pool: () => ledger.pool() },
    instance: { id: service.instanceId, alive: (id) => service.instanceAlive(id) } });
  const server: Server = deps.tls ? createHttpsServer({ cert: deps.tls.cert, key: deps.tls.key, minVersion: 'TLSv1.2' }, app) : createHttpServer(app);
  server.on('clientError', answerClientError);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(deps.port ?? 0, deps.host ?? '127.0.0.1', () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const url = `${deps.tls ? 'https' : 'http'}://${addr.address}:${addr.port}`;
  publicUrl ||= url;
  // this process serves its shard (it holds the shard's lease since createService): requests for
  // the shard's meters that reach another process are sent here
  try {
    await owners.claim(service.config.shard, publicUrl, service.instanceId);
  } catch (e) {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await directory?.close();
    throw e;
  }
  const retention = deps.idempotencyRetentionMs ?? IDEMPOTENCY_RETENTION_MS;
  // Keys still in progress after the retention belong to requests no client ever retried (a
  // request runs for seconds): what they committed stays in the ledger, redeliverable by batch.
  const purge = () => purgeIdempotencyKeys({ db: service.db.knex, olderThan: new Date(Date.now() - retention), includeInProgress: true });
  const purgeTimer = setInterval(() => { void purge().catch(() => undefined); }, IDEMPOTENCY_PURGE_EVERY_MS);
  purgeTimer.unref();
  // Key renewal passes run one at a time, beside the traffic; a failed meter is tried again next pass.
  const renewalLock = new Mutex();
  const renew = (renewBeforeMs = deps.keyRenewal?.renewBeforeMs ?? 30 * 86_400_000) => renewalLock.run(async () => {
    const run = await renewDueKeys({ db: service.db.knex, metergen, renewBeforeMs });
    for (const r of run.renewed) deps.log?.(`key renewal: meter ${r.meterId} serial ${r.previousSerialHex} -> ${r.serialHex}`);
    for (const f of run.failed) deps.log?.(`key renewal: meter ${f.meterId} failed: ${f.error}`);
    return run;
  });
  const renewTimer = deps.keyRenewal ? setInterval(() => { void renew().catch(() => undefined); }, deps.keyRenewal.intervalMs) : undefined;
  renewTimer?.unref();
  if (deps.keyRenewal) void renew().catch(() => undefined); // a first pass at start, in the background
  // Payments applied but not captured (a link failure or a crash between download and capture),
  // then refunds not yet paid back: every CAPTURE_EVERY_MS and at start.
  const captureLock = new Mutex();
  const capturePass = () => captureLock.run(() => mailer.capturePayments());
  const payoutPass = () => captureLock.run(() => mailer.payRefunds());
  const processorPass = () => capturePass().then(() => payoutPass());
  const captureTimer = setInterval(() => { void processorPass().catch(() => undefined); }, CAPTURE_EVERY_MS);
  captureTimer.unref();
  void processorPass().catch(() => undefined);
  // Licence requests still pending at the authority (under review, a link failure, a crash
  // between step 1c and its licence) and revocations not yet reported: every LICENSING_EVERY_MS and at start.
  const licensingLock = new Mutex();
  const licensingPass = () => licensingLock.run(async () => ({
    ...await licences.pass(), revocations: await revocationReports.pass(), fromAuthority: await authorityRevocations.pass(),
  }));
  const licensingEvery = deps.licensingEveryMs ?? LICENSING_EVERY_MS;
  const licensingTimer = licensingEvery > 0
    ? setInterval(() => { void licensingPass().catch((e) => deps.log?.(`licensing pass failed: ${(e as Error).message}`)); }, licensingEvery)
    : undefined;
  licensingTimer?.unref();
  void licensingPass().catch((e) => deps.log?.(`licensing pass failed: ${(e as Error).message}`));
  // Daily reports: the complete days of the last week that have records and no file yet.
  const reportLock = new Mutex();
  const reportPass = () => reportLock.run(async () => {
    if (!deps.reports) return [];
    const engine = service.engines.find((e) => e.status().state === 'Idle' || e.status().state === 'User') ?? service.engines[0];
    const written = await writeMissingReports({ db: service.db.knex, hsm: engine.hsm, dir: deps.reports.dir });
    for (const d of written) deps.log?.(`daily report ${d} written to ${deps.reports.dir}`);
    return written;
  });
  const reportTimer = deps.reports ? setInterval(() => { void reportPass().catch((e) => deps.log?.(`daily report failed: ${(e as Error).message}`)); }, deps.reports.intervalMs) : undefined;
  reportTimer?.unref();
  if (deps.reports) void reportPass().catch((e) => deps.log?.(`daily report failed: ${(e as Error).message}`));
  return {
    purgeIdempotencyKeys: purge,
    renewDueKeys: renew,
    writeMissingReports: reportPass,
    capturePayments: capturePass,
    payRefunds: payoutPass,
    licensingPass,
    url,
    app, api, mailer, metergen, store,
    close: async () => {
      clearInterval(purgeTimer);
      if (renewTimer) clearInterval(renewTimer);
      await renewalLock.run(async () => undefined); // let a running renewal pass finish
      clearInterval(captureTimer);
      await captureLock.run(async () => undefined);
      clearInterval(licensingTimer);
      await licensingLock.run(async () => undefined);
      if (reportTimer) clearInterval(reportTimer);
      await reportLock.run(async () => undefined);
      await new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); });
      await poolLock.run(async () => undefined); // let a running pool refill finish
      await directory?.close();
    },
  };
}

/**
 * Requests Node's HTTP parser refuses before express sees them (headers too large, malformed
 * request line) still get the documented error body, not a bare status line.
 */
function answerClientError(err: Error & { code?: string }, socket: Duplex): void {
  if (!socket.writable || err.code === 'ECONNRESET') {
    socket.destroy();
    return;
  }
  const e = err.code === 'HPE_HEADER_OVERFLOW'
    ? vbiError('HEADERS_TOO_LARGE')
    : vbiError('BAD_REQUEST', 'the request is not well-formed HTTP');
  const body = JSON.stringify(errorBody(e));
  socket.end(`HTTP/1.1 ${e.status} ${STATUS_CODES[e.status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}
