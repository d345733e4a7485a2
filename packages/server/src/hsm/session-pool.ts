import * as graphene from 'graphene-pk11';

/**
 * A pool of open sessions on one token: PKCS#11 allows one operation at a time per session
 * (CKR_OPERATION_ACTIVE otherwise), so every in-flight operation holds its own session.
 * `invalidate()` starts a new generation: sessions of an older generation are closed when
 * released instead of being reused (after a lost session or a token reconnect).
 */
export class SessionPool {
  private idle: graphene.Session[] = [];
  private open = 0;
  private generation = 0;
  private readonly owner = new WeakMap<graphene.Session, number>();
  private waiters: Array<(s: graphene.Session) => void> = [];

  constructor(private readonly openSession: () => graphene.Session, private readonly max: number) {}

  get size(): number {
    return this.open;
  }

  /** Sessions that acquire() would hand out now without waiting (idle, or room to open one). */
  get spare(): number {
    return this.waiters.length > 0 ? 0 : this.idle.length + (this.max - this.open);
  }

  async acquire(): Promise<graphene.Session> {
    const s = this.idle.pop();
    if (s) return s;
    if (this.open < this.max) {
      const fresh = this.openSession();
      this.open++;
      this.owner.set(fresh, this.generation);
      return fresh;
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Returns a session; a broken or outdated one is closed and its place freed. */
  release(s: graphene.Session, broken = false): void {
    if (broken || this.owner.get(s) !== this.generation) {
      this.closeQuietly(s);
      this.open--;
      const waiter = this.waiters.shift();
      if (waiter) {
        // hand a fresh session to the next waiter (open may throw: let the waiter see it later)
        void this.acquire().then(waiter);
      }
      return;
    }
    const waiter = this.waiters.shift();
    if (waiter) waiter(s);
    else this.idle.push(s);
  }

  /** Closes idle sessions and marks sessions in use as outdated. */
  invalidate(): void {
    this.generation++;
    for (const s of this.idle.splice(0)) {
      this.closeQuietly(s);
      this.open--;
    }
  }

  close(): void {
    this.invalidate();
  }

  private closeQuietly(s: graphene.Session): void {
    try {
      s.close();
    } catch {
      // already closed (C_CloseAllSessions, token removed, library finalised)
    }
  }
}
