import * as graphene from 'graphene-pk11';
import { LibraryHandle, findSlotByLabel } from './pkcs11-library';
import { ProbeReport, probeToken } from './token-probe';
import { listProfiles, setLibraryProfile } from './token-profile';
import { PackageSuite } from './mechanisms';
import { login, withSession } from './token-session';

/** Every slot of a library with its token's identity (`ceremony probe` without --label). */
export function listTokens(library: LibraryHandle): Array<{
  slot: string; initialised: boolean; label: string; manufacturerID: string; model: string; serial: string; minPinLen: number; maxPinLen: number;
}> {
  const slots = library.module.getSlots(true);
  const out = [];
  for (let i = 0; i < slots.length; i++) {
    const slot = slots.items(i);
    const t = slot.getToken();
    out.push({
      slot: `0x${slot.handle.toString('hex')}`, initialised: Boolean(t.flags & graphene.TokenFlag.TOKEN_INITIALIZED), label: t.label.trim(),
      manufacturerID: t.manufacturerID.trim(), model: t.model.trim(), serial: t.serialNumber.trim(), minPinLen: t.minPinLen, maxPinLen: t.maxPinLen,
    });
  }
  return out;
}

/**
 * `ceremony probe --label L`: logs in as the service's user, probes the token with the library's
 * profile (the report that decides), then with each other shipped profile that offers the suite
 * (which ones would fit). The library's profile is restored afterwards.
 */
export async function probeWithProfiles(req: {
  library: LibraryHandle; label: string; userPin: string; suite: PackageSuite; wrapMechanism: number; oaepHash: 'sha1' | 'sha256';
}): Promise<{ report: ProbeReport; fitting: string[] }> {
  const slot = findSlotByLabel(req.library, req.label);
  return withSession(slot, async (s) => {
    login(s, req.userPin, graphene.UserType.USER, `login to '${req.label}'`);
    const own = req.library.profile;
    const report = await probeToken(slot, { profile: own, suite: req.suite, wrapMechanism: req.wrapMechanism, oaepHash: req.oaepHash });
    const fitting: string[] = report.ok ? [own.name] : [];
    for (const other of listProfiles()) {
      if (other.name === own.name || !other.suites.includes(req.suite)) continue;
      setLibraryProfile(req.library.module, other);
      try {
        const r = await probeToken(slot, { profile: other, suite: req.suite, wrapMechanism: other.wrapMechanism, oaepHash: other.oaepHash });
        if (r.ok) fitting.push(other.name);
      } finally {
        setLibraryProfile(req.library.module, own);
      }
    }
    return { report, fitting };
  });
}
