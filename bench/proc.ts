import { readdirSync, readFileSync } from 'node:fs';

/**
 * What the kernel counts for another process, read from /proc (Linux): the benches measure the workers, the
 * API and the servers they start from outside, where `process.cpuUsage()` cannot reach.
 */

/** User + system CPU time a process has used, ms; undefined when it is gone or /proc is not there. */
export function processCpuMs(pid: number | undefined): number | undefined {
  if (!pid) return undefined;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return undefined;
  }
}

/** The parent of a process, undefined when it is gone. */
export function parentPid(pid: number): number | undefined {
  try {
    return Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
  } catch {
    return undefined;
  }
}

/** Resident memory of a process now and at its peak, MiB; zeros when it is gone. */
export function residentMiB(pid: number | undefined): { rss: number; peak: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
    return { rss: Math.round(kb('VmRSS') / 1024), peak: Math.round(kb('VmHWM') / 1024) };
  } catch {
    return { rss: 0, peak: 0 };
  }
}

/** CPU time of every process by pid, with its command name, ms (a snapshot of /proc). */
export function cpuByProcess(): Map<number, { comm: string; ms: number }> {
  const out = new Map<number, { comm: string; ms: number }>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
      out.set(Number(d), { comm, ms: ((Number(fields[11]) + Number(fields[12])) * 1000) / 100 });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/**
 * CPU used between two {@link cpuByProcess} snapshots, ms, summed by command name (`postgres`,
 * `redis-server`, `kcat`…); processes in `named` (pid → name) are reported under that name instead.
 * A process that ended between the two is missing from it (its time is in no bucket).
 */
export function cpuBetween(before: Map<number, { comm: string; ms: number }>, after: Map<number, { comm: string; ms: number }>, named = new Map<number, string>()): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [pid, a] of after) {
    const used = a.ms - (before.get(pid)?.comm === a.comm ? before.get(pid)!.ms : 0);
    if (used <= 0) continue;
    const name = named.get(pid) ?? a.comm;
    out[name] = (out[name] ?? 0) + used;
  }
  return out;
}

/** Busy and total CPU time of the whole machine since boot, ms (all cores, from /proc/stat). */
export function machineCpuMs(): { busy: number; total: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: ((total - idle) * 1000) / 100, total: (total * 1000) / 100 };
}
