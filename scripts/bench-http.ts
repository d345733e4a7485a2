/**
 * npm run bench -- http [--seconds N] [--mailers 1,4,16,64] [--batches 1,50]
 *
 * Durable printing through the path mailers take: the real service program (`dist/src/main.js`,
 * what `npm start` runs) in a temp directory of its own — SoftHSM2 dev token, embedded
 * PostgreSQL with fsync on, dev PKI — and mailers registered and printing through the SDK over
 * HTTP. For each number of concurrent mailers K and batch size B it prints items/s (every item
 * committed and checkpointed before its answer), p50/p99 per request and the errors; then the
 * token's raw ECDSA P-256 signature rate measured in the same run on the same token, and the
 * ratio. Not a test: numbers depend on the machine. Quote the output, don't assert on it.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { VbiClient } from '../src/client/vbi-client';
import { CryptoModule } from '../src/hsm/crypto-module';
import { closeLibrary, openLibrary } from '../src/hsm/pkcs11-library';
import { DEV_TOKEN_LABEL, DEV_USER_PIN } from '../src/config/config';
import { ServiceProcess } from '../test/crash/service-process';

function list(name: string, dflt: number[]): number[] {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1].split(',').map(Number) : dflt;
}

function num(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
}

function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN;
}

export async function benchHttp(): Promise<void> {
  const seconds = num('seconds', 5);
  const mailerCounts = list('mailers', [1, 4, 16, 64]);
  const batches = list('batches', [1, 50]);
  const dir = mkdtempSync(join(tmpdir(), 'vbi-bench-http-'));
  const service = await ServiceProcess.create(dir);
  const say = (s: string) => process.stdout.write(`${s}\n`);
  // the bench registers every mailer from one address: lift the per-client registration limit
  service.env = { VBI_AUTH_RATE_LIMIT: '100000', VBI_METER_POOL: '8' };
  try {
    await service.start();
    say(`machine: ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}; service: dist/src/main.js, 1 module (SoftHSM2), embedded PostgreSQL (fsync on); ${seconds} s per row`);
    const password = 'bench http password';
    const clients: VbiClient[] = [];
    const t0 = performance.now();
    for (let i = 0; i < Math.max(...mailerCounts); i++) {
      const c = await VbiClient.register({
        baseUrl: service.url, rootCertPem: service.rootPem, name: `Bench ${i}`, licensingZip: '20260', returnAddress: ['Bench', '1 Main St'],
        password, keyFilePath: join(dir, `mailer-${i}.key`),
      });
      await c.buy({ amount: 100_000_000, payment: { kind: 'card', token: 'tok_approve' } });
      await c.openSession();
      clients.push(c);
    }
    say(`setup: ${clients.length} mailers registered, funded and in session through HTTP in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    let best = 0;
    for (const k of mailerCounts) {
      for (const b of batches) {
        const lat: number[] = [];
        const errors = new Map<string, number>();
        let items = 0;
        const end = performance.now() + seconds * 1000;
        const start = performance.now();
        await Promise.all(clients.slice(0, k).map(async (c) => {
          while (performance.now() < end) {
            const t = performance.now();
            try {
              const out = await c.print(Array.from({ length: b }, () => ({ destinationZip: '205000001', postage: 680 })));
              items += out.printed;
              lat.push(performance.now() - t);
              if (out.printed !== b) errors.set('NOT_PRINTED', (errors.get('NOT_PRINTED') ?? 0) + b - out.printed);
            } catch (e) {
              const code = (e as { code?: string }).code ?? 'ERROR';
              errors.set(code, (errors.get(code) ?? 0) + 1);
            }
          }
        }));
        const elapsed = (performance.now() - start) / 1000;
        lat.sort((x, y) => x - y);
        const rate = items / elapsed;
        best = Math.max(best, rate);
        const errs = errors.size ? [...errors].map(([c, n]) => `${c} ${n}`).join(', ') : 'none';
        say(`K=${String(k).padStart(2)} mailers, batch ${String(b).padStart(2)}: ${rate.toFixed(1).padStart(7)} items/s  p50 ${percentile(lat, 50).toFixed(1)} ms  p99 ${percentile(lat, 99).toFixed(1)} ms per request  (${lat.length} requests, errors: ${errs})`);
      }
    }
    for (const c of clients) await c.closeSession().catch(() => undefined);
    await service.kill();

    // the token's raw rate, on the same token, with the service stopped
    const devEnv = readFileSync(join(__dirname, '..', '..', 'var', 'dev.env'), 'utf8');
    const library = process.env.PKCS11_LIBRARY ?? /^PKCS11_LIBRARY=(.*)$/m.exec(devEnv)?.[1] as string;
    const lib = openLibrary(library, join(dir, 'softhsm2.conf'));
    try {
      const m = await CryptoModule.start({
        library: lib, module: { tokenLabel: DEV_TOKEN_LABEL, userPin: DEV_USER_PIN, userType: 1 },
        hsm: { suite: 'aes', wrapMechanism: lib.profile.wrapMechanism, oaepHash: lib.profile.oaepHash, sessionPoolSize: 4 },
      });
      let raw = 0;
      for (const inFlight of [1, 2]) {
        let n = 0;
        const end = performance.now() + seconds * 1000;
        const s = performance.now();
        await Promise.all(Array.from({ length: inFlight }, async () => {
          while (performance.now() < end) {
            await m.identitySign(Buffer.alloc(32, 7));
            n++;
          }
        }));
        const rate = n / ((performance.now() - s) / 1000);
        raw = Math.max(raw, rate);
        say(`raw ECDSA P-256 sign on the same token, ${inFlight} in flight: ${rate.toFixed(0)}/s`);
      }
      await m.close();
      say(`best durable HTTP rate ${best.toFixed(1)} items/s = ${((best / raw) * 100).toFixed(2)}% of the raw signature rate ${raw.toFixed(0)}/s`);
    } finally {
      closeLibrary(lib);
    }
  } finally {
    await service.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
