import { Client } from 'pg';
import { vbiError } from '@vbi/core/errors';

/**
 * Which of the configured database servers is the primary now (docs/operations.md, "A standby
 * and failover"): node-postgres connects to one host, so the service is given the primary's URL
 * and its standbys' (DATABASE_URL, DATABASE_STANDBY_URLS) and asks. A server is the primary when it
 * answers and `pg_is_in_recovery()` is false; the last one found is asked first. Asked for every
 * new connection of the pool and every lease connection, so after a failover (the standby
 * promoted) new connections go to the new primary by themselves, and never to a standby that
 * would refuse writes — or to an old primary still in recovery from a crash.
 */
export class PrimaryFinder {
  private last = 0;
  private staleSince: number | null = 0;

  constructor(readonly urls: readonly string[], private readonly timeoutMs = 2_000) {
    if (urls.length === 0) throw new Error('no database URL');
  }

  /**
   * Whether the primary must be looked for again before the next connection: at first, and after
   * a connection to it failed (markStale).
   */
  get stale(): boolean {
    return this.staleSince !== null;
  }

  markStale(): void {
    this.staleSince ??= Date.now();
  }

  /** The primary's URL, or DATABASE_UNAVAILABLE when none of the servers is a primary now. */
  async current(): Promise<string> {
    const order = [...this.urls.keys()].sort((a, b) => (a === this.last ? -1 : b === this.last ? 1 : a - b));
    const seen: string[] = [];
    for (const i of order) {
      const state = await probe(this.urls[i], this.timeoutMs);
      seen.push(`${hostOf(this.urls[i])}: ${state}`);
      if (state === 'primary') {
        this.last = i;
        this.staleSince = null;
        return this.urls[i];
      }
    }
    throw vbiError('DATABASE_UNAVAILABLE', `no primary database server answers (${seen.join('; ')})`);
  }
}

async function probe(url: string, timeoutMs: number): Promise<'primary' | 'standby' | 'unreachable'> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: timeoutMs, application_name: 'vbi primary probe' });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const r = await client.query('SELECT pg_is_in_recovery() AS standby');
    return r.rows[0].standby ? 'standby' : 'primary';
  } catch {
    return 'unreachable';
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** host:port of a URL, for messages (never its password). */
function hostOf(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || 5432}`;
  } catch {
    return 'an invalid URL';
  }
}
