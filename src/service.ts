import { Config, DEV_SO_PIN, DEV_TOKEN_LABEL } from './config/config';
import { closeLibrary, openLibrary } from './hsm/pkcs11-library';
import { CryptoModule } from './hsm/crypto-module';
import { ensureDevToken } from './hsm/dev-token';
import { PsdEngine, EngineStatus } from './module/psd-engine';
import { AuditSink } from './module/audit';

export interface Service {
  config: Config;
  engines: PsdEngine[];
  status(): { modules: EngineStatus[] };
  close(): Promise<void>;
}

/**
 * Composition root: configuration in, a running service out. No singletons: tests build as
 * many services as they like with their own configuration, clock and audit sink.
 */
export async function createService(deps: { config: Config; clock?: () => number; audit?: AuditSink }): Promise<Service> {
  const { config } = deps;
  const lib = openLibrary(config.hsm.library, config.hsm.softhsm2Conf);
  const engines: PsdEngine[] = [];
  try {
    for (const m of config.hsm.modules) {
      if (m.tokenLabel === DEV_TOKEN_LABEL) {
        const r = await ensureDevToken({ library: lib, label: m.tokenLabel, soPin: DEV_SO_PIN, userPin: m.userPin, suite: config.hsm.suite });
        if (r.created) process.stderr.write(`provisioned SoftHSM2 dev token '${m.tokenLabel}' (init-token + generate)\n`);
      }
      const hsm = await CryptoModule.start({ library: lib, module: m, hsm: config.hsm });
      engines.push(await PsdEngine.start({ hsm, ringSize: config.hsm.ringSize, clock: deps.clock, audit: deps.audit }));
    }
  } catch (e) {
    for (const e2 of engines) await e2.hsm.close();
    closeLibrary(lib);
    throw e;
  }
  return {
    config,
    engines,
    status: () => ({ modules: engines.map((e) => e.status()) }),
    close: async () => {
      for (const e of engines) await e.hsm.close();
      closeLibrary(lib);
    },
  };
}
