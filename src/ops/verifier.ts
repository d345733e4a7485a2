import { Config } from '../config/config';
import { Database, openDatabase } from '../db/database';
import { CryptoModule } from '../hsm/crypto-module';
import { closeLibrary, openLibrary } from '../hsm/pkcs11-library';

/**
 * What the operator scripts (verify-journal, meter history) need: the database and one module
 * holding the deployment's package keys, to verify MACs and open packages and payloads. No
 * ledger, no ring, no lease: the scripts write nothing to the token and run beside the service.
 */
export async function openVerifier(config: Config): Promise<{ db: Database; hsm: CryptoModule; close(): Promise<void> }> {
  const m = config.hsm.modules[0];
  if (!m) throw new Error('no module configured (PKCS11_TOKEN_LABELS)');
  const db = await openDatabase({ url: config.databaseUrl, varDir: config.varDir, archive: config.walArchive });
  const lib = openLibrary(config.hsm.library, config.hsm.softhsm2Conf, config.hsm.profile, config.hsm.initParameters);
  let hsm: CryptoModule;
  try {
    hsm = await CryptoModule.start({ library: lib, module: m, hsm: config.hsm });
  } catch (e) {
    closeLibrary(lib);
    await db.close();
    throw e;
  }
  return {
    db, hsm,
    close: async () => {
      await hsm.close();
      closeLibrary(lib);
      await db.close();
    },
  };
}
