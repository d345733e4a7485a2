import { Service, createService } from '@vbi/server/service';
import { RunningServer, startServer } from '@vbi/server/server';
import { SandboxPaymentProvider } from '@vbi/server/payments/sandbox-provider';
import type { PaymentProvider } from '@vbi/server/payments/payment-provider';
import { DevLicensingAuthority } from '@vbi/server/licensing/dev-authority';
import type { LicensingAuthority } from '@vbi/server/licensing/licensing-authority';
import { MailerOptions } from '@vbi/server/mailer/mailer-service';
import { freshDatabase } from './db';
import type { Database } from '@vbi/server/db/database';
import type { LedgerOptions } from '@vbi/server/ledger/ledger';
import { testPki } from './pki';
import { provisionModules, testConfig } from './ledger';
import { toPem } from '@vbi/core/pki/pem';

export interface ServerFixture<P extends PaymentProvider = SandboxPaymentProvider> {
  service: Service;
  server: RunningServer;
  payments: P;
  url: string;
  rootPem: string;
  close(): Promise<void>;
}

/**
 * The whole service over HTTP on 127.0.0.1: modules, database, dev PKI, MeterGen pool, API.
 * `labels`: these module tokens instead of `modules` new ones; `started` runs once the service
 * is up, before the fixture buys stock and starts the server (an officer reinstating a module
 * that took over the database).
 */
export async function serverFixture<P extends PaymentProvider = SandboxPaymentProvider>(opts: {
  db?: Database; ledger?: Pick<LedgerOptions, 'faults'>; modules?: number; labels?: string[]; started?: (service: Service) => Promise<void>;
  mailer?: Partial<MailerOptions>; pool?: number; authRateLimit?: { limit: number; windowMs: number }; tls?: { cert: Buffer; key: Buffer };
  /** The licensing authority; default the dev one, which approves a well-formed application at once. */
  licensing?: LicensingAuthority;
  /** The payment processor; default the sandbox (clears a pending check at the first poll). */
  payments?: P;
  /** false: no periodic licensing pass (the test calls licensingPass() itself; the pass at start still runs). */
  licensingTimer?: boolean;
  /** The shard this service serves (packages/server/src/config/shard.ts); `db` must then be opened on its schema. */
  shard?: number;
  /** The shard owner directory's database when not the shard's own (VBI_DIRECTORY_URL). */
  directoryUrl?: string;
} = {}): Promise<ServerFixture<P>> {
  const labels = opts.labels ?? (await provisionModules(opts.modules ?? 1, 'srv'));
  const db = opts.db ?? (await freshDatabase());
  const service = await createService({ config: testConfig(labels, { shard: opts.shard ?? 0, directoryUrl: opts.directoryUrl }), db, ledger: opts.ledger });
  try {
    await opts.started?.(service);
  } catch (e) {
    await service.close();
    throw e;
  }
  await service.ledger.purchaseFromPost({ amount: 1_000_000_000, reference: 'test stock' });
  const pki = await testPki();
  const payments = opts.payments ?? (new SandboxPaymentProvider({ clearAfterPolls: 1 }) as PaymentProvider as P);
  const server = await startServer({
    service, payments, licensing: opts.licensing ?? new DevLicensingAuthority(), licensingEveryMs: opts.licensingTimer === false ? 0 : undefined,
    metergen: (store) => pki.metergen(store),
    pki: { ca: pki.ca, ra: pki.ra, trust: pki.trust, intermediates: pki.intermediates },
    meterPool: { minimum: opts.pool ?? 2, maxDescendingRegister: 500_000_000 },
    mailer: { paymentBackoffMs: 1, ...opts.mailer },
    authRateLimit: opts.authRateLimit,
    tls: opts.tls,
  });
  return {
    service, server, payments, url: server.url, rootPem: toPem('CERTIFICATE', pki.trust.current()),
    close: async () => {
      await server.close();
      await service.close();
    },
  };
}
