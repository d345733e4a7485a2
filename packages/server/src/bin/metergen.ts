import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DEV_SO_PIN, DEV_USER_PIN, loadConfig } from '../config/config';
import { meterIdPrefix } from '../config/shard';
import { vbiError } from '@vbi/core/errors';
import { closeLibrary, openLibrary } from '../hsm/pkcs11-library';
import { createService } from '../service';
import { PgMeterStore } from '../ledger/pg-meter-store';
import { DEV_CA_LABEL, DEV_VENDOR_LABEL } from '../pki/dev';
import { startDevPki } from '../pki/dev-pki';
import { createMeterGen, loadMeterGenConfig, usesPostalCa } from '../config/metergen-config';
import { keepMeterPool } from '../ledger/meter-pool';
import { MeterGen } from '../pki/metergen';
import { runMain } from '@vbi/core/cli/run-main';

/**
 * npm run metergen -- --count N [--max-dr MILLS] [--rsa]
 * npm run metergen -- --keep N            (top the pool of unassigned meters up to N)
 *
 * Creates certified meters ahead of demand. With CA_URL (and the MeterGen variables of
 * packages/server/src/config/metergen-config.ts) it uses that CA; without, the dev CA and vendor tokens.
 */
async function main(): Promise<number> {
  const { values } = parseArgs({ options: { count: { type: 'string' }, keep: { type: 'string' }, 'max-dr': { type: 'string' }, rsa: { type: 'boolean' } } });
  const count = values.count ? Number(values.count) : undefined;
  const keep = values.keep ? Number(values.keep) : undefined;
  const maxDr = Number(values['max-dr'] ?? 1_000_000_000);
  if ((count === undefined) === (keep === undefined) || ![count ?? keep, maxDr].every((n) => Number.isSafeInteger(n) && (n as number) > 0)) {
    throw vbiError('BAD_REQUEST', 'usage: npm run metergen -- --count N | --keep N [--max-dr MILLS] [--rsa]');
  }
  const config = loadConfig(process.env);
  const service = await createService({ config });
  const lib = openLibrary(config.hsm.library, config.hsm.softhsm2Conf, config.hsm.profile, config.hsm.initParameters, config.hsm.threads);
  const store = new PgMeterStore(service.ledger);
  let close: () => Promise<void> | void;
  let metergen: MeterGen;
  if (usesPostalCa(process.env)) {
    const built = await createMeterGen({ config: loadMeterGenConfig(process.env), library: lib, store });
    metergen = built.metergen;
    close = built.close;
  } else {
    const pki = await startDevPki({
      library: lib, caLabel: DEV_CA_LABEL, vendorLabel: DEV_VENDOR_LABEL, soPin: DEV_SO_PIN, userPin: DEV_USER_PIN, caDir: join(config.varDir, 'dev-ca'),
    });
    metergen = pki.metergen(store);
    close = pki.close;
  }
  try {
    if (keep !== undefined) {
      const made = await keepMeterPool({ ledger: service.ledger, metergen, minimum: keep, maxDescendingRegister: maxDr, prefix: meterIdPrefix(config.shard) });
      process.stdout.write(`created ${made.length} meter(s); ${await service.ledger.unassignedMeters()} certified meters are unassigned\n`);
    } else {
      const made = await metergen.createMeters(Array.from({ length: count as number }, (_, i) => ({
        meterId: `${meterIdPrefix(config.shard)}-${Date.now().toString(36).toUpperCase()}-${i}`, maxDescendingRegister: maxDr, algorithm: values.rsa ? 'rsa-2048' as const : 'ec-p256' as const,
      })));
      for (const m of made) process.stdout.write(`${m.meterId}  ${m.algorithm}  certificate ${m.serialHex}  key expires ${new Date(m.keyExpiry).toISOString()}\n`);
    }
    return 0;
  } finally {
    await close();
    await closeLibrary(lib);
    await service.close();
  }
}

runMain(main);
