import { readdirSync, readFileSync } from 'node:fs'

/**
 * Resource readings of a process and of the machine, from /proc. The benchmark reads them for the system under test
 * (its pid is the child pid: `ip netns exec` execs in place) and for the whole machine, so a figure taken while other
 * work ran on the host can be recognised as such.
 */

/** What /proc says about one process at one instant. */
export interface ProcUsage {
  readonly rssKiB: number // VmRSS: resident memory, every thread included
  // RssAnon: the anonymous part (heaps, malloc, stacks), without the mapped files (the node binary, the addons), whose
  // pages the kernel may drop and read again at any time: a per-connection figure taken from it is not moved by that.
  readonly rssAnonKiB: number
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
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return { rssKiB: parseStatusKiB(status, 'VmRSS'), rssAnonKiB: parseStatusKiB(status, 'RssAnon'), cpuMs: parseCpuMs(readFileSync(`/proc/${pid}/stat`, 'utf8')) }
}

/** A "Name:   123 kB" line of a /proc/<pid>/status text (VmRSS, RssAnon), in KiB; NaN when absent (a zombie). Pure. */
export function parseStatusKiB(status: string, name: 'VmRSS' | 'RssAnon'): number {
  const match = new RegExp(`^${name}:\\s+(\\d+)\\s+kB$`, 'm').exec(status)
  return match?.[1] === undefined ? Number.NaN : Number(match[1])
}

/** utime + stime of a /proc/<pid>/stat text, in ms. The command name may hold spaces, so fields count from its ')'. Pure. */
export function parseCpuMs(stat: string): number {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // After the name: state is field 3 of the man page, utime 14 and stime 15, i.e. indexes 11 and 12 here.
  const ticks = Number(fields[11]) + Number(fields[12])
  return (ticks * 1_000) / TICKS_PER_SECOND
}

/** CPU time of each thread of `pid`, in ms, keyed by thread name and tid ("node 1234", "sqlite-writer 1240"). */
export function readThreadCpuMs(pid: number): Map<string, number> {
  const threads = new Map<string, number>()
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
      threads.set(`${name} ${tid}`, parseCpuMs(stat))
    } catch {
      // The thread ended between readdir and read.
    }
  }
  return threads
}

/** CPU time of the main thread of `pid` (the thread whose id is the pid: a Node process's JavaScript), in ms. */
export function readMainThreadCpuMs(pid: number): number {
  return parseCpuMs(readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8'))
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
export function busyPercentOfOneCpu(before: MachineTicks, after: MachineTicks, options: { readonly cpus: number }): number {
  const total = after.total - before.total
  if (total <= 0) return 0
  return ((after.busy - before.busy) / total) * 100 * options.cpus
}

/** CPU time per pid of every user-space process, with its parent, to tell this run's process tree from the rest. */
export type ProcessTable = ReadonlyMap<number, { readonly ppid: number; readonly cpuMs: number }>

/** Reads every process's parent and CPU time from /proc; processes that vanish while being read are skipped. */
export function readProcessTable(): ProcessTable {
  const table = new Map<number, { ppid: number; cpuMs: number }>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      table.set(Number(entry), { ppid, cpuMs: parseCpuMs(stat) })
    } catch {
      // Gone between readdir and read.
    }
  }
  return table
}

/**
 * CPU used between two tables by user-space processes outside the tree rooted at `rootPid` (this benchmark) and
 * outside the kernel's own threads: other work on the machine that competed with the run. Processes that started and
 * ended between the readings are not seen, so this is a lower bound.
 */
export function foreignCpuMs(before: ProcessTable, after: ProcessTable, options: { readonly rootPid: number }): number {
  const { rootPid } = options
  const ours = (pid: number): boolean => {
    for (let p = pid, hops = 0; p > 1 && hops < 64; hops++) {
      if (p === rootPid) return true
      const parent = after.get(p)?.ppid ?? before.get(p)?.ppid
      if (parent === undefined) return false
      p = parent
    }
    return false
  }
  let total = 0
  for (const [pid, now] of after) {
    if (pid === 2 || now.ppid === 2 || ours(pid)) continue // kthreadd and its children are the kernel's
    total += now.cpuMs - (before.get(pid)?.cpuMs ?? 0)
  }
  return total
}
