import { serverFixture } from '../helpers/server';
import type { FuzzTarget, ModuleView } from './fuzzer';

/**
 * The real service for a fuzz run, started exactly as the server tests start it
 * (test/helpers/server.ts: fresh SoftHSM2 tokens, a fresh PostgreSQL database, the dev PKI and
 * MeterGen pool, the HTTP API on 127.0.0.1), with two settings a fuzz run needs: sessions that
 * do not time out during the run (a timeout would end them while refused requests come in), and
 * an authentication rate limit high enough not to hide the routes behind 429s.
 * Needs the environment test/setup.ts prepares (SOFTHSM2_CONF, PKCS11_LIBRARY, VBI_TEST_ROOT).
 */
export interface ServiceUnderTest {
  target: FuzzTarget;
  close(): Promise<void>;
}

export async function startServiceUnderTest(opts: { modules?: number } = {}): Promise<ServiceUnderTest> {
  const f = await serverFixture({
    modules: opts.modules ?? 1,
    pool: 4,
    mailer: { heartbeatIntervalMs: 600_000 },
    authRateLimit: { limit: 1_000_000, windowMs: 60_000 },
  });
  const { service } = f;
  const moduleStatus = (): ModuleView[] => {
    const rotation = new Map(service.ledger.rotation().map((r) => [r.serial, r]));
    return service.engines.map((e) => {
      const s = e.status();
      const r = rotation.get(e.hsm.serial);
      return { serial: e.hsm.serial, state: s.state, inRotation: r?.inRotation ?? true, reason: r?.reason ?? s.reason ?? null };
    });
  };
  return {
    target: { url: f.url, db: service.db.knex, moduleStatus, hsm: service.engines[0].hsm },
    close: () => f.close(),
  };
}
