import { isEndingCode } from '../../client/session';

/**
 * A continuous session in the browser: session key (non-extractable), the one counter shared
 * by heartbeats and print items, and the heartbeat timer. The client runs heartbeats and prints
 * through one queue, so a heartbeat never overtakes a print (the module refuses a counter that
 * is not above every one it saw).
 */
export class WebSession {
  /** Why the session is over; undefined while usable. */
  ended: { code: string; message: string } | undefined;
  /** The last heartbeat that failed without ending the session (the link is down). */
  linkError: { code: string; message: string } | undefined;
  private counter = 0;
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(readonly sessionId: string, readonly sessionKey: CryptoKey, readonly heartbeatIntervalMs: number, readonly timeoutMs: number) {}

  /** The next counter value (1, 2, ...). */
  nextCounter(): number {
    return ++this.counter;
  }

  /** Starts calling `beat` every heartbeatIntervalMs. */
  start(beat: () => void): void {
    if (!this.timer && !this.ended) this.timer = setInterval(beat, this.heartbeatIntervalMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Marks the session over (a code from the service, e.g. SESSION_ENDED). */
  end(code: string, message: string): void {
    this.stop();
    this.ended ??= { code, message };
  }

  /** True for a code that means the session is over. */
  static ends(code: string | undefined): boolean {
    return isEndingCode(code);
  }
}
