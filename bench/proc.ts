import { readdirSync, readFileSync } from 'node:fs';

/**
 * What the kernel counts for another process, read from /proc (Linux): the benches measure the workers, the
 * API and the servers they start from outside, where `process.cpuUsage()` cannot reach.
 */

/**
 * One process' /proc/<pid>/stat: its command name, parent and user + system CPU time, ms; undefined when it
 * is gone or /proc is not there. The name is read up to the last `)`, since a name may hold one.
 */
function readStat(pid: number | string): { comm: string; ppid: number; cpuMs: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
    // utime, stime in clock ticks (USER_HZ = 100)
    return { comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')), ppid: Number(fields[1]), cpuMs: ((Number(fields[11]) + Number(fields[12])) * 1000) / 100 };
  } catch {
    return undefined;
  }
}

/** User + system CPU time a process has used, ms; undefined when it is gone or /proc is not there. */
export function processCpuMs(pid: number | undefined): number | undefined {
  return pid ? readStat(pid)?.cpuMs : undefined;
}

/** The parent of a process, undefined when it is gone. */
export function parentPid(pid: number): number | undefined {
  return readStat(pid)?.ppid;
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
    const st = /^\d+$/.test(d) ? readStat(d) : undefined;
    if (st) out.set(Number(d), { comm: st.comm, ms: st.cpuMs });
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
