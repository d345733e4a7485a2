import { Config } from '../config/config';
import { Database } from '../db/database';
import { openShardDatabase } from '../config/shard-database';
import { CryptoModule } from '../hsm/crypto-module';
import { closeLibrary, openLibrary } from '../hsm/pkcs11-library';

/**
 * What the operator scripts (verify-journal, meter history, audit) need: the database and the
 * configured modules (`hsm`, the first, holds the deployment's package keys to verify MACs and
 * open packages and payloads; each module's identity key and audit head verify its audit chain).
 * No ledger, no ring, no lease: the scripts write nothing to the tokens and run beside the service.
 */
export async function openVerifier(config: Config): Promise<{ db: Database; hsm: CryptoModule; modules: CryptoModule[]; close(): Promise<void> }> {
  if (config.hsm.modules.length === 0) throw new Error('no module configured (PKCS11_TOKEN_LABELS)');
  const db = await openShardDatabase(config);
  const lib = openLibrary(config.hsm.library, config.hsm.softhsm2Conf, config.hsm.profile, config.hsm.initParameters, config.hsm.threads);
  const modules: CryptoModule[] = [];
  const close = async (): Promise<void> => {
    for (const m of modules) await m.close();
    await closeLibrary(lib);
    await db.close();
  };
  try {
    for (const m of config.hsm.modules) modules.push(await CryptoModule.start({ library: lib, module: m, hsm: config.hsm }));
  } catch (e) {
    await close();
    throw e;
  }
  return { db, hsm: modules[0], modules, close };
}
