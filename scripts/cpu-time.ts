import { readdirSync, readFileSync } from 'node:fs';

/**
 * CPU time (user + system, seconds) of processes, from /proc (Linux): what the benchmark spends
 * per printed item in each part — the service, PostgreSQL, and the mailers' SDK in the benchmark's
 * own process — on a machine whose cores all of them share.
 */

/** Clock ticks per second of /proc/<pid>/stat on Linux. */
const TICKS = 100;

/** utime + stime of one process, or 0 when it is gone. */
function ticksOf(pid: number): number {
  try {
    // the command name (field 2) may hold spaces: count fields after its closing parenthesis
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return 0;
  }
}

function parentOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return -1;
  }
}

/** CPU seconds so far of `pid` and, with `children`, of the processes it started (a postmaster's backends). */
export function cpuSeconds(pid: number | undefined, children = false): number {
  if (!pid) return 0;
  let ticks = ticksOf(pid);
  if (children) {
    // backends that exited are counted in the parent's cutime + cstime
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[13]) + Number(f[14]);
    } catch {
      // gone
    }
    for (const name of readdirSync('/proc')) {
      const child = Number(name);
      if (Number.isInteger(child) && parentOf(child) === pid) ticks += ticksOf(child);
    }
  }
  return ticks / TICKS;
}

/** CPU seconds so far of this process (the benchmark and the mailers it drives). */
export function ownCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}
