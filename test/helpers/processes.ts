import { readFileSync, readdirSync } from 'node:fs';

/** Process ids whose parent is `pid` (from /proc): a PostgreSQL postmaster's backends. */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/**
 * The whole server of a data directory dies, as when its machine fails: postmaster and backends
 * together (a backend left alive could still answer on a connection).
 */
export function killServer(dataDir: string): void {
  const pid = Number(readFileSync(`${dataDir}/postmaster.pid`, 'utf8').split('\n')[0]);
  for (const p of [pid, ...childrenOf(pid)]) process.kill(p, 'SIGKILL');
}
