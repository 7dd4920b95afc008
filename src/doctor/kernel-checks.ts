import { access, readFile } from 'node:fs/promises'
import { platform, release } from 'node:os'

import type { Check, MonitorName } from './checks.js'

/**
 * The host as the kernel sees this process: kernel release, BTF, and the capabilities in effect. Root is not the
 * question (a container's root can lack CAP_NET_ADMIN, a systemd unit can have it without root); CapEff is.
 */

/** Bit numbers from linux/capability.h. */
export const CAPABILITIES = {
  CAP_NET_BIND_SERVICE: 10,
  CAP_NET_ADMIN: 12,
  CAP_NET_RAW: 13,
  CAP_SYS_ADMIN: 21,
  CAP_BPF: 39, // since 5.8; before it, CAP_SYS_ADMIN alone allowed bpf()
} as const
export type CapabilityName = keyof typeof CAPABILITIES

/** The CapEff mask of a /proc/PID/status text, or null when the line is missing. Pure. */
export function parseCapEff(procStatus: string): bigint | null {
  const m = /^CapEff:\s*([0-9a-fA-F]{1,16})\s*$/m.exec(procStatus)
  return m?.[1] === undefined ? null : BigInt(`0x${m[1]}`)
}

/** Whether the mask holds the capability. Pure. */
export function hasCapability(mask: bigint, name: CapabilityName): boolean {
  return ((mask >> BigInt(CAPABILITIES[name])) & 1n) === 1n
}

export interface KernelVersion {
  readonly major: number
  readonly minor: number
  readonly patch: number
}

/** ebpf: bpf_xdp_load_bytes (synfacts) arrived in 5.18, bpf_loop in 5.17, sk_lookup in 5.9. */
export const EBPF_MIN_KERNEL: KernelVersion = { major: 5, minor: 18, patch: 0 }

/** tcx (tc ingress through a link) arrived in 6.6: the SYN-facts program runs there, at XDP before. */
export const TCX_MIN_KERNEL: KernelVersion = { major: 6, minor: 6, patch: 0 }

/** "6.18.44-fc-v669", "5.10.0-28-amd64", "6.1" -> numbers; null when the release does not start with N.N. Pure. */
export function parseKernelRelease(text: string): KernelVersion | null {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(text.trim())
  if (m === null) return null
  return { major: Number(m[1]), minor: Number(m[2]), patch: m[3] === undefined ? 0 : Number(m[3]) }
}

/** Negative, zero or positive, like a sort comparator. Pure. */
export function compareKernelVersions(a: KernelVersion, b: KernelVersion): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch
}

export interface Privileges {
  readonly euid: number | null // null: not a POSIX platform
  readonly capEff: bigint | null // null: /proc/self/status unreadable or without CapEff
}

/** Reads this process's effective uid and capabilities. */
export async function loadPrivileges(): Promise<Privileges> {
  const text = await readFile('/proc/self/status', 'utf8').catch(() => '')
  return { euid: process.geteuid?.() ?? null, capEff: parseCapEff(text) }
}

/** Whether the process holds a capability; without a CapEff line, root is taken to hold them all. */
export function holds(p: Privileges, name: CapabilityName): boolean {
  return p.capEff === null ? p.euid === 0 : hasCapability(p.capEff, name)
}

/** Capability requirements per monitor: each entry is one need, met by any capability of its list. */
const NEEDS: Readonly<Record<MonitorName, readonly (readonly CapabilityName[])[]>> = {
  nfqueue: [['CAP_NET_ADMIN'], ['CAP_NET_RAW']], // NET_ADMIN binds the queue and edits rules; legacy iptables needs NET_RAW
  ebpf: [['CAP_BPF', 'CAP_SYS_ADMIN'], ['CAP_NET_ADMIN']], // networking programs need both (linux/capability.h)
  pcap: [['CAP_NET_RAW']], // a packet socket
}

function grantFix(names: readonly CapabilityName[]): string {
  const docker = names.map((n) => `--cap-add ${n.slice(4)}`).join(' ')
  return (
    `run the sensor as root (sudo honeytrap-ts run), or grant ${names.join(' and ')}: ` +
    `systemd AmbientCapabilities=${names.join(' ')}; docker ${docker}`
  )
}

/**
 * One capability check per monitor, plus one for low ports (every monitor answers on the ports it sees, and ports
 * below 1024 need CAP_NET_BIND_SERVICE). Pure, so the decoding is tested on fixed masks.
 */
export function capabilityChecks(p: Privileges): Check[] {
  const checks: Check[] = []
  const mask = p.capEff === null ? 'unknown' : p.capEff.toString(16).padStart(16, '0')
  const who = `euid ${p.euid ?? 'unknown'}, CapEff ${mask}`
  for (const monitor of ['nfqueue', 'ebpf', 'pcap'] as const) {
    const unmet = NEEDS[monitor].filter((need) => !need.some((name) => holds(p, name)))
    const wanted = NEEDS[monitor].map((need) => need[0] as CapabilityName)
    const id = `${monitor}.capabilities`
    if (unmet.length === 0) {
      const held = NEEDS[monitor].map((need) => need.find((name) => holds(p, name)) ?? need[0])
      checks.push({ id, monitor, status: 'ok', summary: `has ${held.join(' and ')}`, detail: who })
    } else {
      const missing = unmet.map((need) => need[0] + (need.length > 1 ? ` (or ${need.slice(1).join(', ')})` : '')).join(' and ')
      checks.push({ id, monitor, status: 'fail', summary: `missing ${missing}`, detail: who, fix: grantFix(wanted) })
    }
  }
  if (!holds(p, 'CAP_NET_BIND_SERVICE')) {
    checks.push({
      id: 'privileges.low-ports',
      monitor: 'all',
      status: 'warn',
      summary: 'missing CAP_NET_BIND_SERVICE: attempts on ports below 1024 cannot be answered',
      detail: who,
      fix: grantFix(['CAP_NET_BIND_SERVICE']),
    })
  }
  return checks
}

export interface KernelFacts {
  readonly platform: string
  readonly release: string
  readonly btf: boolean // /sys/kernel/btf/vmlinux exists
}

/** The kernel release against each monitor's needs, and BTF. Pure. */
export function kernelChecks(k: KernelFacts): Check[] {
  if (k.platform !== 'linux') {
    return [{ id: 'kernel.version', monitor: 'all', status: 'fail', summary: `${k.platform} is not Linux: every monitor needs a Linux kernel` }]
  }
  const version = parseKernelRelease(k.release)
  const checks: Check[] = [{ id: 'kernel.version', monitor: 'all', status: 'ok', summary: `Linux ${k.release}` }]
  const min = `${EBPF_MIN_KERNEL.major}.${EBPF_MIN_KERNEL.minor}`
  if (version === null) {
    checks.push({ id: 'kernel.ebpf-version', monitor: 'ebpf', status: 'warn', summary: `cannot read a version from "${k.release}"; ebpf needs ${min} or later` })
  } else if (compareKernelVersions(version, EBPF_MIN_KERNEL) < 0) {
    checks.push({
      id: 'kernel.ebpf-version',
      monitor: 'ebpf',
      status: 'fail',
      summary: `kernel ${version.major}.${version.minor} is older than ${min}`,
      detail: 'the SYN-facts program calls bpf_xdp_load_bytes (5.18) and bpf_loop (5.17)',
      fix: `boot a kernel ${min} or later (Debian 12's 6.1 is; Debian 11: apt-get install -t bullseye-backports linux-image-amd64), or use monitor nfqueue`,
    })
  } else {
    // Where the SYN facts will be read matters beyond the sensor: XDP slows down large received packets on some
    // drivers (docs/monitors.md).
    const hook = compareKernelVersions(version, TCX_MIN_KERNEL) >= 0 ? 'SYN facts at tc ingress (tcx)' : 'SYN facts at XDP (tcx needs 6.6)'
    checks.push({ id: 'kernel.ebpf-version', monitor: 'ebpf', status: 'ok', summary: `kernel ${version.major}.${version.minor} >= ${min}; ${hook}` })
  }
  checks.push(
    k.btf
      ? { id: 'kernel.btf', monitor: 'ebpf', status: 'ok', summary: 'kernel BTF present (/sys/kernel/btf/vmlinux)' }
      : {
          id: 'kernel.btf',
          monitor: 'ebpf',
          status: 'warn',
          summary: 'no kernel BTF (/sys/kernel/btf/vmlinux)',
          detail: 'our programs use no CO-RE relocations and load without it; bpftool shows less',
          fix: 'a kernel built with CONFIG_DEBUG_INFO_BTF=y (every Debian 12 kernel is)',
        },
  )
  return checks
}

/** Reads the kernel facts of this host. */
export async function loadKernelFacts(): Promise<KernelFacts> {
  const btf = await access('/sys/kernel/btf/vmlinux').then(
    () => true,
    () => false,
  )
  return { platform: platform(), release: release(), btf }
}
