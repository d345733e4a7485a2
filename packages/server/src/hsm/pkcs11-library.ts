import * as graphene from 'graphene-pk11';
import * as pkcs11 from 'pkcs11js';
import { vbiError } from '@vbi/core/errors';
import { TokenProfile, loadProfile, setLibraryProfile } from './token-profile';
import { defaultTokenThreads, setLibraryThreads, TokenThreads } from './token-threads';

/**
 * One initialised PKCS#11 library per path per process. C_Initialize is process-wide and
 * C_Finalize anywhere ends every session of every module on that library, so modules share
 * a reference-counted handle and only the last close finalises.
 */
export interface LibraryHandle {
  readonly path: string;
  readonly module: graphene.Module;
  /** What this implementation supports and needs (packages/server/hsm/profiles). */
  readonly profile: TokenProfile;
  /** Number of token threads (packages/server/src/hsm/token-threads.ts): calls the process runs on the token side by side. */
  readonly threads: number;
}

interface Entry { handle: LibraryHandle; refs: number; softhsm2Conf?: string; threads: TokenThreads }
const libraries = new Map<string, Entry>();

/**
 * `profile`: a TokenProfile, a profile name or file (PKCS11_PROFILE), or undefined for the shipped
 * profile whose library path pattern matches `path`.
 */
export function openLibrary(path: string, softhsm2Conf?: string, profile?: TokenProfile | string, initParameters?: string, threads = defaultTokenThreads()): LibraryHandle {
  const entry = libraries.get(path);
  if (entry) {
    if (softhsm2Conf && entry.softhsm2Conf && softhsm2Conf !== entry.softhsm2Conf) {
      throw vbiError('CONFIG_INVALID', `library ${path} is already initialised with SOFTHSM2_CONF=${entry.softhsm2Conf}`);
    }
    const wanted = typeof profile === 'object' ? profile.name : profile;
    if (wanted && wanted !== entry.handle.profile.name) {
      throw vbiError('CONFIG_INVALID', `library ${path} is already open with token profile '${entry.handle.profile.name}'`);
    }
    entry.refs++;
    return entry.handle;
  }
  const tokenProfile = typeof profile === 'object' ? profile : loadProfile(profile, path);
  // SoftHSM2 reads its configuration at C_Initialize; other libraries ignore the variable.
  // A write for the native library (it reads only its environment), not configuration read here.
  if (softhsm2Conf) process.env.SOFTHSM2_CONF = softhsm2Conf;
  let module: graphene.Module;
  try {
    module = graphene.Module.load(path);
  } catch (e) {
    throw vbiError('CONFIG_INVALID', `cannot load PKCS#11 library ${path}: ${(e as Error).message}`);
  }
  // OS locking: without it SoftHSM2 turns its mutexes off while pkcs11js runs async calls on
  // worker threads.
  // initParameters (PKCS11_INIT_PARAMETERS) go in C_INITIALIZE_ARGS.pReserved, which some
  // libraries read their configuration from (NSS softokn: configdir=...).
  module.initialize({ flags: pkcs11.CKF_OS_LOCKING_OK, ...(initParameters ? { libraryParameters: initParameters } : {}) });
  setLibraryProfile(module, tokenProfile);
  const tokenThreads = new TokenThreads(path, threads);
  setLibraryThreads(module, tokenThreads);
  const handle = { path, module, profile: tokenProfile, threads };
  libraries.set(path, { handle, refs: 1, softhsm2Conf, threads: tokenThreads });
  return handle;
}

/**
 * Drops one reference; the last one stops the token threads, waits until they are gone, then
 * calls C_Finalize. The wait matters: a thread still exiting runs its own clean-up against the
 * library (openCryptoki frees its OpenSSL context in C_Finalize, and a worker's per-thread
 * OpenSSL clean-up after that corrupted the heap). Opened again meanwhile, the library stays
 * initialised, with new token threads.
 */
export async function closeLibrary(handle: LibraryHandle): Promise<void> {
  const entry = libraries.get(handle.path);
  if (!entry || entry.handle !== handle) return;
  if (--entry.refs > 0) return;
  await entry.threads.close();
  if (entry.refs > 0) {
    entry.threads = new TokenThreads(handle.path, handle.threads);
    setLibraryThreads(handle.module, entry.threads);
    return;
  }
  libraries.delete(handle.path);
  try {
    handle.module.finalize();
  } catch {
    // already finalised
  }
}

/** Finds the slot whose token carries `label` (labels are space-padded to 32 bytes). */
export function findSlotByLabel(handle: LibraryHandle, label: string): graphene.Slot {
  const slots = handle.module.getSlots(true);
  for (let i = 0; i < slots.length; i++) {
    const slot = slots.items(i);
    if (slot.getToken().label.trim() === label) return slot;
  }
  throw vbiError('TOKEN_NOT_FOUND', `no token labelled '${label}' in ${handle.path}`);
}

/** The first slot with an uninitialised token (profiles with provisioning 'free-slot'). */
export function findFreeSlot(handle: LibraryHandle): graphene.Slot {
  const slots = handle.module.getSlots(true);
  for (let i = 0; i < slots.length; i++) {
    const slot = slots.items(i);
    if (!(slot.getToken().flags & graphene.TokenFlag.TOKEN_INITIALIZED)) return slot;
  }
  throw vbiError('TOKEN_NOT_FOUND', 'no uninitialised token slot is available');
}
