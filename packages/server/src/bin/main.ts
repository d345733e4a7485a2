import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEV_SO_PIN, DEV_USER_PIN, loadConfig } from '../config/config';
import { createService } from '../service';
import { runFront } from '../ops/front';
import { meterIdPrefix } from '../config/shard';
import { ServerDeps, startServer } from '../server';
import { vbiError } from '@vbi/core/errors';
import { openLibrary, closeLibrary } from '../hsm/pkcs11-library';
import { attachDevPki, startDevPki, DevPki } from '../pki/dev-pki';
import { DEV_CA_LABEL, DEV_VENDOR_LABEL } from '../pki/dev';
import { createMeterGen, loadMeterGenConfig } from '../config/metergen-config';
import { PgMeterStore } from '../ledger/pg-meter-store';
import { MeterGen } from '../pki/metergen';
import { fromPemAll } from '@vbi/core/pki/pem';
import { paymentProvider } from '../payments/provider-config';
import { paymentSettings } from '../config/payment-settings';
import { LicensingAuthority } from '../licensing/licensing-authority';
import { DevLicensingAuthority } from '../licensing/dev-authority';
import { cmlsHttpOptionsFromEnv } from '../config/cmls-settings';
import { CmlsHttpAuthority } from '../licensing/cmls-http-authority';
import { frontSettings, licensingChoice, serverSettings } from '../config/server-settings';
import { runMain } from '@vbi/core/cli/run-main';

/**
 * `npm start`: the whole service. On the embedded defaults (no DATABASE_URL, no CA_URL, the
 * SoftHSM2 dev token) it provisions what is missing — dev module token and key ceremony, dev CA
 * and vendor tokens, the CA itself — starts PostgreSQL, runs the migrations, keeps a few certified
 * meters ready, and serves the API. Production sets PKCS11_*, DATABASE_URL, CA_URL and the
 * MeterGen variables (packages/server/src/config/metergen-config.ts), VBI_INTERMEDIATES, VBI_TLS_CERT/KEY and
 * VBI_PAYMENT_PROVIDER and VBI_LICENSING_AUTHORITY (with VBI_CMLS_*). The process's own settings
 * are read by packages/server/src/config/server-settings.ts.
 */
async function main(): Promise<void> {
  const workers = process.argv.indexOf('--workers');
  if (workers >= 0) return front(process.argv[workers + 1]);
  const payments = paymentProvider(paymentSettings(process.env));
  const licensing = licensingAuthority(process.env);
  const config = loadConfig(process.env);
  const settings = serverSettings(process.env);
  if (config.standby) process.stdout.write(`standby for shard ${config.shard}: waiting until no other process serves it\n`);
  const service = await createService({ config });
  for (const m of service.status().modules) {
    const tests = m.selfTest ? `${m.selfTest.results.filter((r) => r.ok).length}/${m.selfTest.results.length} self-tests passed` : 'self-tests not run';
    process.stdout.write(`module '${m.tokenLabel}' serial ${m.serial}: ${m.state}${m.reason ? ` (${m.reason})` : ''}; ${tests}; ring ${m.ring.entries}/${m.ring.size}\n`);
  }
  const lib = openLibrary(config.hsm.library, config.hsm.softhsm2Conf, config.hsm.profile, config.hsm.initParameters, config.hsm.threads);
  let devPki: DevPki | undefined;
  let closeRa = () => undefined as void;
  let pki: ServerDeps['pki'];
  let metergenOf: (store: PgMeterStore) => MeterGen;
  if (!settings.productionPki) {
    const caPort = settings.devCaPort;
    // shard 0's process creates and serves the dev CA; another shard's uses it (packages/server/src/config/shard.ts)
    devPki = config.shard === 0
      ? await startDevPki({
        library: lib, caLabel: DEV_CA_LABEL, vendorLabel: DEV_VENDOR_LABEL, soPin: DEV_SO_PIN, userPin: DEV_USER_PIN,
        caDir: join(config.varDir, 'dev-ca'), port: caPort,
      })
      : await attachDevPki({ library: lib, vendorLabel: DEV_VENDOR_LABEL, userPin: DEV_USER_PIN, caDir: join(config.varDir, 'dev-ca'), caUrl: `http://127.0.0.1:${caPort}` });
    process.stdout.write(`dev postal CA on ${devPki.caUrl} (root certificate: var/dev-ca/root.pem)\n`);
    pki = { ca: devPki.ca, ra: devPki.ra, trust: devPki.trust, intermediates: devPki.intermediates };
    metergenOf = devPki.metergen.bind(devPki);
    // a dev deployment buys its first postage stock from the "post" once
    if ((await service.ledger.pool()).purchased === 0) await service.ledger.purchaseFromPost({ amount: 10_000_000_000, reference: 'dev stock' });
  } else {
    const intermediatesFile = settings.intermediatesFile;
    if (!intermediatesFile) throw vbiError('CONFIG_INVALID', 'VBI_INTERMEDIATES must name the issuing CA certificate(s) (PEM)');
    const built = await createMeterGen({ config: loadMeterGenConfig(process.env), library: lib, store: new PgMeterStore(service.ledger) });
    closeRa = built.close;
    pki = { ca: built.ca, ra: built.ra, trust: built.trust, intermediates: fromPemAll('CERTIFICATE', readFileSync(intermediatesFile, 'utf8')) };
    metergenOf = () => built.metergen;
  }
  const tls = settings.tls ? { cert: readFileSync(settings.tls.certFile), key: readFileSync(settings.tls.keyFile) } : undefined;
  const server = await startServer({
    service, pki, metergen: metergenOf, payments, licensing,
    meterPool: { minimum: settings.meterPoolMinimum, maxDescendingRegister: 1_000_000_000 },
    host: settings.host, port: settings.port, tls, publicUrl: settings.publicUrl,
    trustProxy: settings.trustProxy,
    // registration, challenge and session-open attempts per client address (and meter) per minute
    authRateLimit: settings.authRateLimit,
    keyRenewal: service.config.keyRenewal,
    reports: { dir: service.config.reportDir, intervalMs: 3_600_000 },
    mailer: { userSecretsLifetimeMs: service.config.userSecretsLifetimeMs },
    log: (line) => process.stderr.write(line + '\n'),
  });
  process.stdout.write(`meters ready for registration: ${await service.ledger.unassignedMeters()}\n`);
  process.stdout.write(`shard ${config.shard}: meters ${meterIdPrefix(config.shard)}-…\n`);
  process.stdout.write(`listening on ${server.url}  (health: ${server.url}/v1/health, API: ${server.url}/v1/openapi.json)\n`);
  process.stdout.write(`web app: ${server.url}/\n`);
  process.stdout.write(`try:  VBI_SERVER=${server.url} VBI_PASSWORD='choose-a-password' npm run vbi -- register --name "Acme Mail Room" --zip 20260 --return-address "Acme Mail Room|1 Main St|Washington DC 20260"\n`);
  const stop = () => {
    void (async () => {
      await server.close();
      await devPki?.close();
      closeRa();
      await closeLibrary(lib);
      await service.close();
      process.exit(0);
    })();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  // a worker of the front (packages/server/src/ops/front.ts) stops with it
  if (process.connected) process.on('disconnect', stop);
}

/**
 * `npm start -- --workers N`: N service processes, worker i serving shard i, behind one front
 * on PORT (packages/server/src/ops/front.ts).
 */
async function front(count: string | undefined): Promise<void> {
  const n = Number(count);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw vbiError('CONFIG_INVALID', `--workers takes a number of processes from 1 to 64, got '${count ?? ''}'`);
  const settings = serverSettings(process.env);
  const running = await runFront({
    workers: n, host: settings.host, port: settings.port, varDir: settings.varDir, settings: frontSettings(process.env),
    // the workers' environment: this process's, passed on (not read here)
    env: process.env, program: __filename,
    log: (line) => process.stdout.write(line + '\n'),
  });
  for (const w of running.workers()) process.stdout.write(`[front] shard ${w.shard}: worker pid ${w.pid} on ${w.url}\n`);
  process.stdout.write(`listening on ${running.url}  (the front of ${n} workers; web app: ${running.url}/)\n`);
  const stop = () => {
    void running.close().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

/** The postal licensing authority (docs/licensing.md) that configuration chooses (packages/server/src/config/server-settings.ts, licensingChoice). */
function licensingAuthority(env: NodeJS.ProcessEnv): LicensingAuthority {
  return licensingChoice(env) === 'cmls-http' ? new CmlsHttpAuthority(cmlsHttpOptionsFromEnv(env)) : new DevLicensingAuthority();
}

runMain(main);
