import { createHash, createPublicKey } from 'node:crypto';
import * as graphene from 'graphene-pk11';
import { vbiError } from '@vbi/core/errors';
import { LibraryHandle, findSlotByLabel } from './pkcs11-library';
import { login, withSession } from './token-session';
import { P256_PARAMS } from './mechanisms';
import { ecPublicKeySpki } from './public-keys';
import { ApprovalCheck } from './hsm-module';
import * as ops from './async-ops';
import { sha256 } from './module-keys';
import type { ModuleLifecycle } from './module-lifecycle';

/**
 * The officers whose approvals a module accepts (docs/key-ceremony.md, "Officer approvals"):
 * each officer's approval public key, installed in the module token by the module's Security
 * Officer as a CKA_TRUSTED public key object. Only an SO session can set CKA_TRUSTED, so the
 * service's own login (the Crypto-User PIN) can remove these keys but never add one that counts.
 * The threshold M of the M-of-N rule travels in every object's label, which is not modifiable.
 */
export const APPROVER_PREFIX = 'vbi.approver.';

export interface Approver { name: string; spki: Buffer }

/** `vbi.approver.<M>of<N>.<name>` */
export function approverLabel(threshold: number, count: number, name: string): string {
  return `${APPROVER_PREFIX}${threshold}of${count}.${name}`;
}

export function parseApproverLabel(label: string): { threshold: number; count: number; name: string } | null {
  const m = /^vbi\.approver\.([1-9][0-9]?)of([1-9][0-9]?)\.(.+)$/.exec(label);
  return m ? { threshold: Number(m[1]), count: Number(m[2]), name: m[3] } : null;
}

/** Officer names: letters, digits, space, dot, dash, underscore; 1–64 characters. */
export function checkOfficerName(name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$/.test(name)) throw vbiError('BAD_REQUEST', `officer name '${name}' must be 1-64 letters, digits, space, dot, dash or underscore`);
  return name;
}

/**
 * Replaces the module token's approvers with `officers` and the rule "M of them": an SO session
 * destroys the approver objects there are and creates one trusted, unmodifiable EC P-256 verify
 * key per officer.
 */
export async function installApprovers(req: { library: LibraryHandle; label: string; soPin: string; threshold: number; officers: Approver[] }): Promise<string[]> {
  const n = req.officers.length;
  if (!Number.isInteger(req.threshold) || req.threshold < 1 || req.threshold > n || n > 99) {
    throw vbiError('BAD_REQUEST', `the threshold must be between 1 and the number of officers (${n}), got ${req.threshold}`);
  }
  const names = req.officers.map((o) => checkOfficerName(o.name));
  if (new Set(names).size !== n) throw vbiError('BAD_REQUEST', 'officer names must differ');
  const ids = req.officers.map((o) => createHash('sha256').update(o.spki).digest('hex'));
  if (new Set(ids).size !== n) throw vbiError('BAD_REQUEST', 'two officers have the same public key');
  const points = req.officers.map((o) => p256Point(o.spki, o.name));
  return withSession(findSlotByLabel(req.library, req.label), (s) => {
    login(s, req.soPin, graphene.UserType.SO, 'SO login');
    const old = s.find({ class: graphene.ObjectClass.PUBLIC_KEY });
    for (let i = 0; i < old.length; i++) {
      const o = old.items(i);
      if (String(o.getAttribute('label')).startsWith(APPROVER_PREFIX)) o.destroy();
    }
    const labels: string[] = [];
    for (const [i, o] of req.officers.entries()) {
      const label = approverLabel(req.threshold, n, o.name);
      s.create({
        class: graphene.ObjectClass.PUBLIC_KEY, keyType: graphene.KeyType.EC, token: true, private: false,
        label, id: Buffer.from(ids[i].slice(0, 32), 'hex'), paramsEC: P256_PARAMS,
        // CKA_EC_POINT: the DER OCTET STRING around the uncompressed point
        pointEC: Buffer.concat([Buffer.from([0x04, 0x41]), points[i]]),
        verify: true, encrypt: false, wrap: false, trusted: true, modifiable: false,
      });
      labels.push(label);
    }
    return labels;
  });
}

/** The approvers a module token holds: only objects the token reports CKA_TRUSTED (what a session of any role can read). */
export function readApprovers(s: graphene.Session): Array<{ label: string; threshold: number; count: number; name: string; key: graphene.PublicKey; spki: Buffer }> {
  const found = s.find({ class: graphene.ObjectClass.PUBLIC_KEY, trusted: true });
  const out = [];
  for (let i = 0; i < found.length; i++) {
    const key = found.items(i).toType<graphene.PublicKey>();
    // the search asked for CKA_TRUSTED; read it back too, whatever the token's search does
    if (key.getAttribute('trusted') !== true) continue;
    const label = String(key.getAttribute('label'));
    const parsed = parseApproverLabel(label);
    if (!parsed) continue;
    out.push({ label, ...parsed, key, spki: ecPublicKeySpki(key) });
  }
  return out;
}

/** Checks officers' approvals of `statement` with the approver keys the module token holds (CryptoModule.verifyApprovals). */
export function verifyApprovals(m: ModuleLifecycle, req: { statement: Buffer; approvals: Array<{ officer: string; signature: Buffer }> }): Promise<ApprovalCheck> {
  const digest = sha256(req.statement);
  return m.run('verify officer approvals', async (s) => {
    const approvers = readApprovers(s);
    const thresholds = new Set(approvers.map((a) => a.threshold));
    const valid: string[] = [];
    for (const a of req.approvals) {
      const key = approvers.find((k) => k.name === a.officer);
      if (!key || valid.includes(a.officer)) continue;
      if (await ops.verify(s, 'ECDSA', key.key, digest, a.signature)) valid.push(a.officer);
    }
    return {
      // every approver object must name the same M; anything else counts as no rule at all
      threshold: thresholds.size === 1 ? [...thresholds][0] : null,
      officers: approvers.map((a) => a.name),
      valid,
    };
  });
}

function p256Point(spki: Buffer, who: string): Buffer {
  const jwk = createPublicKey({ key: spki, format: 'der', type: 'spki' }).export({ format: 'jwk' });
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || !jwk.x || !jwk.y) throw vbiError('BAD_REQUEST', `the key of officer ${who} is not an EC P-256 public key`);
  return Buffer.concat([Buffer.from([0x04]), Buffer.from(jwk.x, 'base64url'), Buffer.from(jwk.y, 'base64url')]);
}
