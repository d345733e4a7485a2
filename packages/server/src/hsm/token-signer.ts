import { createHash } from 'node:crypto';
import * as graphene from 'graphene-pk11';
import { vbiError } from '@vbi/core/errors';
import { LibraryHandle, findSlotByLabel } from './pkcs11-library';
import { SigningRole, signingKeyLabel } from './key-templates';
import { ecPublicKeySpki } from './public-keys';
import { TokenSession, openSession } from './token-session';
import * as ops from './async-ops';

/** A signing key in a token: role and generation (token object label `<role label>.<n>`). */
export interface SigningKeyRef {
  role: SigningRole;
  generation: number;
}

/** Which token, and how to log in to it. */
export interface TokenSignerOptions {
  library: LibraryHandle;
  tokenLabel: string;
  userPin: string;
  /** PKCS#11 user type; 1 = CKU_USER. */
  userType?: number;
  /** Sessions kept open for concurrent signatures. */
  poolSize?: number;
}

/**
 * Signs with the EC P-256 key of a signing role (CA root, CA issuing, vendor RA) in its own
 * token: ECDSA over a SHA-256 digest computed host-side (SoftHSM2 has no hashed ECDSA
 * mechanism), returned as raw r||s like CryptoModule.identitySign. Every operation takes a
 * pooled session and gives it back in `finally`; a lost session or login is recovered once.
 * Key handles are looked up per call by label, so nothing goes stale across token reconnects.
 */
export class TokenSigner {
  readonly tokenLabel: string;
  private readonly session: TokenSession;
  private closed = false;

  private constructor(opts: TokenSignerOptions, slot: graphene.Slot) {
    this.tokenLabel = opts.tokenLabel;
    this.session = new TokenSession({
      tokenLabel: opts.tokenLabel,
      pin: opts.userPin,
      userType: (opts.userType ?? graphene.UserType.USER) as graphene.UserType,
      open: () => openSession(slot),
      poolSize: opts.poolSize ?? 2,
      relogin: 'each-call',
    });
  }

  /** Finds the token by label and proves the PIN with one login (PIN_INCORRECT otherwise). */
  static async open(opts: TokenSignerOptions): Promise<TokenSigner> {
    const signer = new TokenSigner(opts, findSlotByLabel(opts.library, opts.tokenLabel));
    try {
      await signer.withSession('login', () => undefined);
    } catch (e) {
      signer.close();
      throw e;
    }
    return signer;
  }

  /** DER SubjectPublicKeyInfo of a signing key. */
  publicKeySpki(key: SigningKeyRef): Promise<Buffer> {
    return this.withSession('read public key', (s) => ecPublicKeySpki(this.find(s, key, graphene.ObjectClass.PUBLIC_KEY).toType<graphene.PublicKey>()));
  }

  /** True when the token holds the private key of that generation. */
  hasKey(key: SigningKeyRef): Promise<boolean> {
    return this.withSession('find key', (s) => s.find({ class: graphene.ObjectClass.PRIVATE_KEY, label: signingKeyLabel(key.role, key.generation) }).length === 1);
  }

  /** ECDSA P-256 over SHA-256(data), raw r||s (64 bytes). */
  sign(req: { key: SigningKeyRef; data: Buffer }): Promise<Buffer> {
    const digest = createHash('sha256').update(req.data).digest();
    return this.withSession(`sign with ${signingKeyLabel(req.key.role, req.key.generation)}`, async (s) => {
      const key = this.find(s, req.key, graphene.ObjectClass.PRIVATE_KEY).toType<graphene.PrivateKey>();
      // A signing key must never be exportable: refuse one whose attributes say otherwise.
      const a = key.getAttribute({ extractable: null, sign: null });
      if (a.extractable !== false || a.sign !== true) {
        throw vbiError('KEY_ATTRIBUTES_WEAK', `${signingKeyLabel(req.key.role, req.key.generation)} on '${this.tokenLabel}' is extractable or not a signing key`);
      }
      return ops.sign(s, 'ECDSA', key, digest);
    });
  }

  /** Closes every pooled session; idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.session.pool.close();
  }

  private find(s: graphene.Session, key: SigningKeyRef, cls: graphene.ObjectClass): graphene.SessionObject {
    const label = signingKeyLabel(key.role, key.generation);
    const found = s.find({ class: cls, label });
    if (found.length !== 1) throw vbiError('KEY_MISSING', `token '${this.tokenLabel}' has ${found.length} objects labelled ${label}`);
    return found.items(0);
  }

  /** One pooled, logged-in session for `op`; one retry on a fresh session after a lost session. */
  private async withSession<T>(what: string, op: (s: graphene.Session) => Promise<T> | T): Promise<T> {
    if (this.closed) throw vbiError('MODULE_NOT_READY', `signer for '${this.tokenLabel}' is closed`);
    return this.session.run(what, op);
  }
}
