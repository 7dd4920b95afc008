import { readFileSync } from 'node:fs'

/**
 * Resource readings of a process and of the machine, from /proc. The benchmark reads them for the system under test
 * (its pid is the child pid: `ip netns exec` execs in place) and for the whole machine, so a figure taken while other
 * work ran on the host can be recognised as such.
 */

/** What /proc says about one process at one instant. */
export interface ProcUsage {
  readonly rssKiB: number // VmRSS: resident memory, every thread included
  readonly cpuMs: number // user + system time of every thread since the process started
}

/** What /proc/stat says about the whole machine at one instant, in clock ticks summed over every CPU. */
export interface MachineTicks {
  readonly busy: number
  readonly total: number
}

// USER_HZ is 100 on every Linux architecture Node supports; /proc reports times in these ticks.
const TICKS_PER_SECOND = 100

/** Reads VmRSS and the CPU time of `pid`; throws if the process is gone. */
export function readProcUsage(pid: number): ProcUsage {
  return { rssKiB: parseVmRssKiB(readFileSync(`/proc/${pid}/status`, 'utf8')), cpuMs: parseCpuMs(readFileSync(`/proc/${pid}/stat`, 'utf8')) }
}

/** The VmRSS line of a /proc/<pid>/status text, in KiB; NaN when absent (a zombie). Pure. */
export function parseVmRssKiB(status: string): number {
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status)
  return match?.[1] === undefined ? Number.NaN : Number(match[1])
}

/** utime + stime of a /proc/<pid>/stat text, in ms. The command name may hold spaces, so fields count from its ')'. Pure. */
export function parseCpuMs(stat: string): number {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // After the name: state is field 3 of the man page, utime 14 and stime 15, i.e. indexes 11 and 12 here.
  const ticks = Number(fields[11]) + Number(fields[12])
  return (ticks * 1_000) / TICKS_PER_SECOND
}

/** Reads the machine-wide busy and total CPU ticks from /proc/stat. */
export function readMachineTicks(): MachineTicks {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? ''
  const values = line.trim().split(/\s+/).slice(1).map(Number)
  // user nice system idle iowait irq softirq steal guest guest_nice; guest time is already inside user.
  const total = values.slice(0, 8).reduce((sum, v) => sum + v, 0)
  const idle = (values[3] ?? 0) + (values[4] ?? 0)
  return { busy: total - idle, total }
}

/** Share of all CPUs' time that was busy between two readings, in percent of one CPU (200 = both cores of two). */
export function busyPercentOfOneCpu(before: MachineTicks, after: MachineTicks, cpus: number): number {
  const total = after.total - before.total
  if (total <= 0) return 0
  return ((after.busy - before.busy) / total) * 100 * cpus
}
