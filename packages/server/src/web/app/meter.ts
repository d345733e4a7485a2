import { WebClient } from '@vbi/client/web/client/web-client';
import type { WebSession } from '@vbi/client/web/client/web-session';

/** Where the browser keeps the key file: its encrypted text only (the CLI's format). */
export const KEY_FILE_STORAGE = 'vbi.keyFile';

/** The page's one open meter and the session banner. */
export class Meter {
  client: WebClient | undefined;

  constructor(private readonly banner: HTMLElement) {}

  /** The encrypted key file kept in this browser, if any. */
  storedKeyFile(): string | null {
    return localStorage.getItem(KEY_FILE_STORAGE);
  }

  persist = (text: string): void => {
    localStorage.setItem(KEY_FILE_STORAGE, text);
  };

  use(client: WebClient): void {
    this.client = client;
    client.onSessionChange = (s) => this.show(s);
    this.show(undefined);
  }

  /** The open client, or an error telling the user to open the meter first. */
  require(): WebClient {
    if (!this.client) throw Object.assign(new Error('open your meter first (Meter page)'), { code: 'NOT_REGISTERED' });
    return this.client;
  }

  /** The session, opened (with heartbeats) when there is none or it ended. */
  async session(): Promise<WebSession> {
    const c = this.require();
    if (c.session && !c.session.ended) return c.session;
    const s = await c.openSession();
    this.show(s);
    return s;
  }

  /** Redraws the banner: meter, session, heartbeats, a dropped link at once. */
  show(s: WebSession | undefined): void {
    const c = this.client;
    if (!c) {
      this.banner.className = 'session';
      this.banner.textContent = 'No meter open.';
      return;
    }
    s ??= c.session;
    if (!s) {
      this.banner.className = 'session';
      this.banner.textContent = `Meter ${c.meterId}: no session (one opens when you print).`;
    } else if (s.ended) {
      this.banner.className = 'session down';
      this.banner.dataset.state = 'ended';
      this.banner.textContent = `Link dropped: session ended (${s.ended.code}). Nothing more prints in it; printing opens a new session.`;
    } else if (s.linkError) {
      this.banner.className = 'session down';
      this.banner.dataset.state = 'down';
      this.banner.textContent = `Link dropped: heartbeat failed (${s.linkError.code}). Items printed now are voided if the session times out.`;
    } else {
      this.banner.className = 'session live';
      this.banner.dataset.state = 'live';
      this.banner.textContent = `Meter ${c.meterId}: session live, heartbeat with dynamic password every ${Math.round(s.heartbeatIntervalMs / 1000)} s.`;
    }
  }
}
