import { guardCheck, monitorVerdicts, recommendMonitor, CHECK_TIMEOUT_MS, type Check, type MonitorName, type MonitorVerdict } from './checks.js'
import { ebpfChecks } from './ebpf-checks.js'
import { capabilityChecks, kernelChecks, loadKernelFacts, loadPrivileges, type Privileges } from './kernel-checks.js'
import { nfqueueChecks } from './nfqueue-checks.js'
import { pcapChecks } from './pcap-checks.js'

/** Everything `honeytrap-ts doctor` found, as printed with --json. */
export interface DoctorReport {
  readonly host: {
    readonly kernel: string // uname -r
    readonly node: string // process.version
    readonly euid: number | null
    readonly capEff: string | null // 16 hex digits, as in /proc/self/status
  }
  readonly checks: readonly Check[] // kernel and privileges first, then nfqueue, ebpf, pcap
  readonly monitors: readonly MonitorVerdict[] // ebpf, nfqueue, pcap
  readonly recommended: MonitorName | null // the first usable one in that order
}

// Checks that must not fail for lack of privileges to read them.
const FALLBACK_PRIVILEGES: Privileges = { euid: null, capEff: null }

/**
 * Runs every check and draws the verdicts. Reads only: no module loaded, no rule, queue or program left behind (the
 * eBPF probe loads the steering program and frees it without attaching it). Never throws.
 */
export async function runDoctor(): Promise<DoctorReport> {
  let privileges = FALLBACK_PRIVILEGES
  let kernel = ''
  const base = await Promise.all([
    guardCheck({ id: 'kernel.version', monitor: 'all', timeoutMs: CHECK_TIMEOUT_MS, onError: 'warn' }, async () => {
      const facts = await loadKernelFacts()
      kernel = facts.release
      return kernelChecks(facts)
    }),
    guardCheck({ id: 'privileges', monitor: 'all', timeoutMs: CHECK_TIMEOUT_MS, onError: 'warn' }, async () => {
      privileges = await loadPrivileges()
      return capabilityChecks(privileges)
    }),
  ])
  const [nfqueue, ebpf, pcap] = await Promise.all([nfqueueChecks(privileges), ebpfChecks(), pcapChecks()])
  // Kernel and capability findings about one monitor head that monitor's group, so the output reads monitor by monitor.
  const found = base.flat()
  const about = (m: MonitorName | 'all'): Check[] => found.filter((c) => c.monitor === m)
  const checks = [...about('all'), ...about('nfqueue'), ...nfqueue, ...about('ebpf'), ...ebpf, ...about('pcap'), ...pcap]
  const monitors = monitorVerdicts(checks)
  return {
    host: {
      kernel,
      node: process.version,
      euid: privileges.euid,
      capEff: privileges.capEff === null ? null : privileges.capEff.toString(16).padStart(16, '0'),
    },
    checks,
    monitors,
    recommended: recommendMonitor(monitors),
  }
}
