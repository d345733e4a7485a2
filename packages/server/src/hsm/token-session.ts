import * as graphene from 'graphene-pk11';
import * as pkcs11 from 'pkcs11js';
import { VbiError } from '@vbi/core/errors';
import { SessionPool } from './session-pool';
import { ckr, isRecoverable, toVbiError } from './pkcs11-errors';

const RW = graphene.SessionFlag.SERIAL_SESSION | graphene.SessionFlag.RW_SESSION;

/** A read-write session on `slot`. */
export function openSession(slot: graphene.Slot): graphene.Session {
  return slot.open(RW);
}

/**
 * Logs in; "already logged in" (login state is token-wide) is success. Any other failure becomes
 * a registry error named by `what`; with `passRecoverable`, a lost session is thrown as it is so
 * that the caller's retry sees it.
 */
export function login(s: graphene.Session, pin: string, type: graphene.UserType, what: string, passRecoverable = false): void {
  try {
    s.login(pin, type);
  } catch (e) {
    if (ckr(e) === pkcs11.CKR_USER_ALREADY_LOGGED_IN) return;
    if (passRecoverable && isRecoverable(e)) throw e;
    throw toVbiError(e, what);
  }
}

/** A read-write session for `fn`, logged out and closed after it (the ceremony's one-off sessions). */
export function withSession<T>(slot: graphene.Slot, fn: (s: graphene.Session) => Promise<T> | T): Promise<T> {
  const s = openSession(slot);
  return Promise.resolve()
    .then(() => fn(s))
    .finally(() => {
      try { s.logout(); } catch { /* not logged in */ }
      try { s.close(); } catch { /* closed */ }
    });
}

export interface TokenSessionOptions {
  tokenLabel: string;
  pin: string;
  userType: graphene.UserType;
  open: () => graphene.Session;
  poolSize: number;
  /**
   * 'each-call': every call logs in, and a lost session only starts a new pool generation
   * (TokenSigner: it keeps no key handles, so nothing else goes stale). 'on-recovery': the owner
   * logs in once, and a lost session triggers one single-flight recovery — new sessions, login,
   * `afterLogin` (CryptoModule: finds its key handles again).
   */
  relogin: 'each-call' | 'on-recovery';
  afterLogin?: (s: graphene.Session) => void;
  /** Failures, besides a lost session, after which the session is closed rather than pooled (CryptoModule: device errors, weak keys). */
  closesSession?: (e: unknown) => boolean;
  /** Told of a failure that is about to be thrown (CryptoModule: puts the module into Error). */
  onFailure?: (e: unknown, what: string) => void;
}

/**
 * The pooled, logged-in sessions of one token in one role, and the retry rule every service
 * call on it follows: a recoverable PKCS#11 error (lost session, lost login, stale handles)
 * closes the session and runs the call once more after recovery; any other failure is thrown
 * as a registry error.
 */
export class TokenSession {
  readonly pool: SessionPool;
  private recovering: Promise<void> | undefined;

  constructor(private readonly opts: TokenSessionOptions) {
    this.pool = new SessionPool(opts.open, opts.poolSize);
  }

  login(s: graphene.Session): void {
    login(s, this.opts.pin, this.opts.userType, `login to '${this.opts.tokenLabel}'`, this.opts.relogin === 'each-call');
  }

  /** Runs `op` on a pooled session; one retry after a recoverable error. */
  async run<T>(what: string, op: (s: graphene.Session) => Promise<T> | T): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const s = await this.pool.acquire();
      try {
        if (this.opts.relogin === 'each-call') this.login(s);
        const out = await op(s);
        this.pool.release(s);
        return out;
      } catch (e) {
        const recoverable = !(e instanceof VbiError) && isRecoverable(e);
        const retry = recoverable && attempt === 0;
        // each-call: the new generation starts before the broken session is released, so a waiter gets a fresh one
        if (retry && this.opts.relogin === 'each-call') this.pool.invalidate();
        this.pool.release(s, recoverable || (this.opts.closesSession?.(e) ?? false));
        if (retry) {
          if (this.opts.relogin === 'on-recovery') await this.recover();
          continue;
        }
        this.opts.onFailure?.(e, what);
        throw toVbiError(e, what);
      }
    }
  }

  /** Single-flight recovery: drop every pooled session, log in again, run afterLogin. */
  recover(): Promise<void> {
    if (!this.recovering) {
      this.recovering = (async () => {
        this.pool.invalidate();
        const s = await this.pool.acquire();
        try {
          this.login(s);
          this.opts.afterLogin?.(s);
          this.pool.release(s);
        } catch (e) {
          this.pool.release(s, true);
          throw e;
        }
      })().finally(() => {
        this.recovering = undefined;
      });
    }
    return this.recovering;
  }
}
