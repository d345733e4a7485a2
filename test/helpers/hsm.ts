import { randomBytes } from 'node:crypto';
import * as graphene from 'graphene-pk11';
import { LibraryHandle, closeLibrary, openLibrary } from '@vbi/server/hsm/pkcs11-library';
import { generateModuleKeys, initToken } from '@vbi/server/hsm/key-ceremony';
import { CryptoModule, CryptoModuleOptions } from '@vbi/server/hsm/crypto-module';
import { PsdEngine, EngineOptions } from '@vbi/server/module/psd-engine';
import { PackageSuite } from '@vbi/server/hsm/mechanisms';
import { HsmConfig } from '@vbi/server/hsm/hsm-config';
import { TokenProfile, setLibraryProfile } from '@vbi/server/hsm/token-profile';

/**
 * PINs of the tokens tests create: VBI_TEST_SO_PIN / VBI_TEST_USER_PIN on a library whose PIN
 * rules these defaults break (packages/server/hsm/README.md, "Running the suite on another library").
 */
export const TEST_SO_PIN = process.env.VBI_TEST_SO_PIN || 'test-officer-pin';
export const TEST_USER_PIN = process.env.VBI_TEST_USER_PIN || 'test-user-pin';

let lib: LibraryHandle | undefined;

/** The PKCS#11 library, initialised once per test run on the run's own token directory. */
export function testLibrary(): LibraryHandle {
  if (!lib) lib = openLibrary(process.env.PKCS11_LIBRARY as string, process.env.SOFTHSM2_CONF, process.env.PKCS11_PROFILE || undefined);
  return lib;
}

export async function closeTestLibrary(): Promise<void> {
  if (lib) await closeLibrary(lib);
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

/**
 * A fresh token labelled `label` (then `generate`, as an officer would run it). On a library whose
 * profile offers free slots (SoftHSM2) that is `ceremony init-token`; on any other, one of the
 * initialised tokens in the slots VBI_TEST_TOKEN_SLOTS names (SO PIN = TEST_SO_PIN) is re-initialised under
 * the new label with C_InitToken and the current SO PIN — the least recently provisioned one, so
 * the list must be longer than the number of tokens one test file keeps in use (plus the two
 * the test PKI keeps: `keep`).
 */
export async function provisionToken(label: string, suite: PackageSuite = 'aes', keys = true, opts: { keep?: boolean } = {}): Promise<void> {
  const library = testLibrary();
  if (library.profile.provisioning === 'free-slot') await initToken({ library, label, soPin: TEST_SO_PIN, userPin: TEST_USER_PIN });
  else reinitialiseFromPool(library, label, opts.keep ?? false);
  if (keys) await generateModuleKeys({ library, label, soPin: TEST_SO_PIN, userPin: TEST_USER_PIN, suite });
}

/** Slots of the pool, least recently provisioned first. */
let pool: graphene.Slot[] | undefined;

/** VBI_TEST_TOKEN_SLOTS: positions in the library's slot list, e.g. `4-19` or `2,3,5`. */
function poolSlots(library: LibraryHandle): graphene.Slot[] {
  const spec = process.env.VBI_TEST_TOKEN_SLOTS ?? '';
  const all = library.module.getSlots(true);
  const out: graphene.Slot[] = [];
  for (const part of spec.split(',').map((p) => p.trim()).filter(Boolean)) {
    const [a, b] = part.split('-').map(Number);
    for (let i = a; i <= (b ?? a); i++) {
      if (!Number.isInteger(i) || i < 0 || i >= all.length) throw new Error(`VBI_TEST_TOKEN_SLOTS: no slot ${i} (the library has ${all.length})`);
      out.push(all.items(i));
    }
  }
  return out;
}

function reinitialiseFromPool(library: LibraryHandle, label: string, keep: boolean): void {
  pool ??= poolSlots(library);
  if (!pool.length) {
    throw new Error(`token profile '${library.profile.name}' has no free slots: name initialised test tokens in VBI_TEST_TOKEN_SLOTS (packages/server/hsm/README.md)`);
  }
  const slot = pool.shift() as graphene.Slot;
  // back at the end of the queue at once: a failed re-initialisation must not shrink the pool
  if (!keep) pool.push(slot);
  slot.lib.C_InitToken(slot.handle, TEST_SO_PIN, label.padEnd(32, ' '));
  const s = slot.open(graphene.SessionFlag.SERIAL_SESSION | graphene.SessionFlag.RW_SESSION);
  try {
    s.login(TEST_SO_PIN, graphene.UserType.SO);
    s.initPin(TEST_USER_PIN);
    s.logout();
  } finally {
    s.close();
  }
}

/** Skips a suite that needs what only a free-slot library (SoftHSM2) gives: child services provisioning their own dev tokens, `init-token`. */
export function requireFreeSlots(ctx: Mocha.Context): void {
  if (testLibrary().profile.provisioning !== 'free-slot') ctx.skip();
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

/** Skips a test that needs two modules with cloned package keys, on a profile that refuses the clone. */
export function requireClone(ctx: Mocha.Context): void {
  if (!testLibrary().profile.sharedKeysExtractable) ctx.skip();
}
