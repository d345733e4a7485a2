import { randomBytes } from 'node:crypto';
import { LibraryHandle, closeLibrary, openLibrary } from '../../src/hsm/pkcs11-library';
import { generateModuleKeys, initToken } from '../../src/hsm/key-ceremony';
import { CryptoModule, CryptoModuleOptions } from '../../src/hsm/crypto-module';
import { PsdEngine, EngineOptions } from '../../src/module/psd-engine';
import { PackageSuite } from '../../src/hsm/mechanisms';
import { HsmConfig } from '../../src/config/config';
import { TokenProfile, setLibraryProfile } from '../../src/hsm/token-profile';

/** PINs of the tokens tests create. */
export const TEST_SO_PIN = 'test-officer-pin';
export const TEST_USER_PIN = 'test-user-pin';

let lib: LibraryHandle | undefined;

/** The PKCS#11 library, initialised once per test run on the run's own token directory. */
export function testLibrary(): LibraryHandle {
  if (!lib) lib = openLibrary(process.env.PKCS11_LIBRARY as string, process.env.SOFTHSM2_CONF, process.env.PKCS11_PROFILE || undefined);
  return lib;
}

export function closeTestLibrary(): void {
  if (lib) closeLibrary(lib);
  lib = undefined;
}

/** Token labels are at most 32 characters; a random suffix keeps tests independent. */
export function uniqueLabel(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`.slice(0, 32);
}

export function hsmConfig(suite: PackageSuite = 'aes', over: Partial<HsmConfig> = {}): HsmConfig {
  const profile = testLibrary().profile;
  return {
    library: process.env.PKCS11_LIBRARY as string,
    softhsm2Conf: process.env.SOFTHSM2_CONF,
    profile,
    modules: [],
    suite,
    ringSize: 3,
    wrapMechanism: profile.wrapMechanism,
    oaepHash: profile.oaepHash,
    sessionPoolSize: 4,
    ...over,
  };
}

/** init-token + generate, as an officer would run them. */
export async function provisionToken(label: string, suite: PackageSuite = 'aes', keys = true): Promise<void> {
  await initToken({ library: testLibrary(), label, soPin: TEST_SO_PIN, userPin: TEST_USER_PIN });
  if (keys) await generateModuleKeys({ library: testLibrary(), label, soPin: TEST_SO_PIN, userPin: TEST_USER_PIN, suite });
}

export async function startModule(label: string, suite: PackageSuite = 'aes', over: Partial<CryptoModuleOptions> = {}): Promise<CryptoModule> {
  return CryptoModule.start({
    library: testLibrary(),
    module: { tokenLabel: label, userPin: TEST_USER_PIN, userType: 1 },
    hsm: hsmConfig(suite),
    ...over,
  });
}

export async function startEngine(label: string, suite: PackageSuite = 'aes', over: Partial<EngineOptions> = {}): Promise<{ module: CryptoModule; engine: PsdEngine }> {
  const module = await startModule(label, suite);
  const engine = await PsdEngine.start({ hsm: module, ringSize: 3, ...over });
  return { module, engine };
}

/**
 * Runs `fn` with the test library seen through a variant of its token profile: what a token
 * that needs (or does) something else looks like, on the same PKCS#11 library. The variant is
 * the library's profile until `fn` settles.
 */
export async function withTestProfile<T>(over: Partial<TokenProfile>, fn: (library: LibraryHandle) => Promise<T>): Promise<T> {
  const base = testLibrary();
  const profile: TokenProfile = { ...base.profile, ...over, name: `${base.profile.name}+test` };
  setLibraryProfile(base.module, profile);
  try {
    return await fn({ ...base, profile });
  } finally {
    setLibraryProfile(base.module, base.profile);
  }
}
