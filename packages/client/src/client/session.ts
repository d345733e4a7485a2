import { isVbiError } from '@vbi/core/errors';

/** Codes after which a session cannot be used any more. */
const ENDING_CODES = ['SESSION_ENDED', 'BAD_DYNAMIC_PASSWORD', 'SESSION_NOT_FOUND'] as const;

/** True for an error that means the session is over. */
export function endsSession(e: unknown): boolean {
  return ENDING_CODES.some((c) => isVbiError(e, c));
}

/** True for a reason code (a voided print item's) that means the session is over. */
export function isEndingCode(code: string | undefined): boolean {
  return (ENDING_CODES as readonly string[]).includes(code ?? '');
}

/**
 * A continuous session (secure on-line printing claims: continuous link, dynamic password) on the client side: the session key, one counter shared by
 * heartbeats and print items (strictly increasing: the module refuses any counter not above
 * every one used before), and the heartbeat timer.
 *
 * Ordering invariant: a heartbeat and a print request must never be in flight together. The
 * service checks counters in arrival order, so a heartbeat overtaking a print (or the reverse)
 * would carry a counter below one already seen and end the session. `exclusive` waits for a
 * running heartbeat and holds the timer off while the print runs (the service counts each
 * printed item as activity, so the session stays live).
 */
export class ClientSession {
  readonly sessionId: string;
  readonly sessionKey: Buffer;
  readonly heartbeatIntervalMs: number;
  readonly timeoutMs: number;
  /** Why the session is over (closed, ended by the service); undefined while usable. */
  ended: Error | undefined;
  /** The last heartbeat failure that did not end the session (e.g. a network failure). */
  lastHeartbeatError: unknown;
  private counter = 0;
  private timer: NodeJS.Timeout | undefined;
  private inflight: Promise<void> | undefined;
  private holds = 0;

  constructor(private readonly opts: {
    sessionId: string; sessionKey: Buffer; heartbeatIntervalMs: number; timeoutMs: number;
    /** Sends one heartbeat with this counter. */
    beat: (counter: number) => Promise<void>;
    /** Called once when a heartbeat learns the session is over. */
    onEnded?: (reason: Error) => void;
  }) {
    this.sessionId = opts.sessionId;
    this.sessionKey = opts.sessionKey;
    this.heartbeatIntervalMs = opts.heartbeatIntervalMs;
    this.timeoutMs = opts.timeoutMs;
  }

  /** The next counter value (1, 2, ...). */
  nextCounter(): number {
    return ++this.counter;
  }

  /** The last counter handed out. */
  get lastCounter(): number {
    return this.counter;
  }

  /** Starts the heartbeat timer (unref'd: it never keeps the process alive by itself). */
  startHeartbeats(): void {
    if (this.timer || this.ended) return;
    this.timer = setInterval(() => void this.tick(), this.heartbeatIntervalMs);
    this.timer.unref();
  }

  /** Stops the timer; the session stays usable until it times out on the service. */
  stopHeartbeats(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Sends one heartbeat now (after any running one); errors are thrown, and end the session when they say so. */
  async heartbeat(): Promise<void> {
    await this.inflight;
    await this.runBeat(true);
  }

  /** Runs `fn` with no heartbeat in flight and the timer held off. */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    this.holds++;
    try {
      await this.inflight;
      return await fn();
    } finally {
      this.holds--;
    }
  }

  /** Marks the session over and stops the timer. */
  end(reason: Error): void {
    this.stopHeartbeats();
    if (!this.ended) {
      this.ended = reason;
      this.opts.onEnded?.(reason);
    }
  }

  private async tick(): Promise<void> {
    if (this.holds > 0 || this.inflight || this.ended) return;
    await this.runBeat(false);
  }

  private async runBeat(rethrow: boolean): Promise<void> {
    const run = (async () => {
      try {
        await this.opts.beat(this.nextCounter());
        this.lastHeartbeatError = undefined;
      } catch (e) {
        if (endsSession(e)) this.end(e as Error);
        else this.lastHeartbeatError = e;
        if (rethrow) throw e;
      }
    })();
    this.inflight = run.then(() => undefined, () => undefined);
    try {
      await run;
    } finally {
      this.inflight = undefined;
    }
  }
}
