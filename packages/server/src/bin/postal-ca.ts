import { caSettings } from '../config/ca-settings';
import { closeLibrary, openLibrary } from '../hsm/pkcs11-library';
import { TokenSigner } from '../hsm/token-signer';
import { CaDirectory } from '../pki/ca/ca-directory';
import { startCaServer } from '../pki/ca/http-server';
import { PostalCa } from '../pki/ca/postal-ca';
import { runMain } from '@vbi/core/cli/run-main';

/**
 * The dev/test postal CA as a process:  node packages/server/dist/src/bin/postal-ca.js
 *   VBI_CA_DIR (default var/ca), VBI_CA_PORT (default 8444), VBI_CA_HOST (default 127.0.0.1),
 *   VBI_CA_USER_PIN[_FILE] (the dev CA token 'vbi-dev-ca' falls back to the dev PIN).
 * Same PKCS#11 library settings as the service (packages/server/src/config/ca-settings.ts reads them). MeterGen reaches it through CA_URL.
 */
async function main(): Promise<void> {
  const settings = caSettings(process.env);
  const { config, dir } = settings;
  const state = new CaDirectory(dir).readState();
  const userPin = settings.userPin(state.tokenLabel);
  const lib = openLibrary(config.hsm.library, config.hsm.softhsm2Conf, config.hsm.profile, config.hsm.initParameters, config.hsm.threads);
  const signer = await TokenSigner.open({ library: lib, tokenLabel: state.tokenLabel, userPin });
  const ca = await PostalCa.open({ dir, signer });
  const running = await startCaServer({ ca, host: settings.host, port: settings.port });
  process.stdout.write(`postal CA (${dir}, token '${state.tokenLabel}') listening on ${running.url}\n`);
  const stop = () => {
    void running.close().then(async () => {
      signer.close();
      await closeLibrary(lib);
      process.exit(0);
    });
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

runMain(main);
