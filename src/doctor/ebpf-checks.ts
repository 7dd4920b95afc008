import { access, readFile, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { ADVISED_SOMAXCONN, readSomaxconn, SOMAXCONN_FIX } from '../monitor/ebpf/accept-queue.js'
import { DEFAULT_STEER_OBJECT, DEFAULT_SYNFACTS_OBJECT, openSteering } from '../monitor/ebpf/bpf-native.js'
import { parseCgroup2Root } from '../monitor/ebpf/cgroup2-root.js'
import { execBounded, firstLine, guardCheck, CHECK_TIMEOUT_MS, type Check } from './checks.js'

/**
 * What `monitor: ebpf` needs beyond the kernel and capabilities (kernel-checks): the addon and BPF objects that
 * `npm run build:native` makes, a kernel that accepts the steering program (loaded for real, verified, closed, never
 * attached), and no other copy of our programs already loaded (listed with bpftool).
 */

// bpf-native derives the addon's place from the same build directory as the objects.
const ADDON_FILE = join(dirname(DEFAULT_STEER_OBJECT), '..', 'Release', 'honeytrap_bpf.node')
const BUILD_FIX = 'apt-get install clang libbpf-dev build-essential, then npm run build:native'
const EPERM = 1
const OUR_PREFIX = 'honeytrap_' // every program in native/bpf/*.c is named so

/** Every ebpf check, in display order. Never throws. */
export async function ebpfChecks(): Promise<Check[]> {
  const guard = (id: string, onError: 'fail' | 'warn', body: () => Promise<Check> | Check) =>
    guardCheck({ id, monitor: 'ebpf', timeoutMs: CHECK_TIMEOUT_MS, onError }, body)
  const files = await guard('ebpf.build', 'fail', buildCheck)
  const built = files.every((c) => c.status === 'ok')
  const groups = await Promise.all([
    built ? guard('ebpf.probe', 'fail', probeCheck) : Promise.resolve([notProbed()]),
    guard('ebpf.programs', 'warn', programsCheck),
    guard('ebpf.accept-queue', 'warn', acceptQueueCheck),
    guard('ebpf.cgroup2', 'warn', cgroup2Check),
  ])
  return [...files, ...groups.flat()]
}

async function buildCheck(): Promise<Check> {
  const base = { id: 'ebpf.build', monitor: 'ebpf' } as const
  const wanted = [ADDON_FILE, DEFAULT_STEER_OBJECT, DEFAULT_SYNFACTS_OBJECT]
  const missing: string[] = []
  for (const path of wanted) {
    const present = await access(path).then(
      () => true,
      () => false,
    )
    if (!present) missing.push(path)
  }
  if (missing.length === 0) return { ...base, status: 'ok', summary: 'the eBPF addon and BPF objects are built', detail: wanted.join('\n') }
  const summary = `the eBPF side is not built (${missing.length} of ${wanted.length} files missing)`
  return { ...base, status: 'fail', summary, detail: missing.join('\n'), fix: BUILD_FIX }
}

/** The one steering socket's accept queue holds every port's handshakes; somaxconn caps it (accept-queue.ts). */
async function acceptQueueCheck(): Promise<Check> {
  const base = { id: 'ebpf.accept-queue', monitor: 'ebpf' } as const
  const somaxconn = await readSomaxconn()
  if (somaxconn === null) return { ...base, status: 'warn', summary: 'net.core.somaxconn could not be read' }
  if (somaxconn >= ADVISED_SOMAXCONN) return { ...base, status: 'ok', summary: `net.core.somaxconn is ${somaxconn}` }
  return {
    ...base,
    status: 'warn',
    summary: `net.core.somaxconn is ${somaxconn}: the one accept queue of every port overflows under a fast scan`,
    detail: 'handshakes past it are dropped and retried by the client a second later',
    fix: SOMAXCONN_FIX,
  }
}

/** The bind watch attaches at the root of the cgroup v2 hierarchy; only read here, never mounted (see cgroup2-root.ts). */
async function cgroup2Check(): Promise<Check> {
  const base = { id: 'ebpf.cgroup2', monitor: 'ebpf' } as const
  const root = parseCgroup2Root(await readFile('/proc/self/mounts', 'utf8').catch(() => ''))
  if (root !== null) return { ...base, status: 'ok', summary: `cgroup v2 is mounted at ${root}: ports bound while the sensor runs are left to their owner from the bind` }
  return {
    ...base,
    status: 'warn',
    summary: 'no cgroup v2 hierarchy is mounted: a port bound while the sensor runs is steered to it until the next /proc/net scan',
    fix: 'mount -t cgroup2 none /sys/fs/cgroup/unified (or boot with systemd.unified_cgroup_hierarchy=1)',
  }
}

function notProbed(): Check {
  return { id: 'ebpf.probe', monitor: 'ebpf', status: 'fail', summary: 'not probed: nothing to load until the eBPF side is built', fix: BUILD_FIX }
}

/**
 * Loads the sk_lookup program into the kernel (verifier included) and frees it at once. Loading changes nothing a
 * packet can see: only attach() would, and it is never called. The SYN-facts programs are not probed: openSynFacts attaches.
 */
function probeCheck(): Check {
  const base = { id: 'ebpf.probe', monitor: 'ebpf' } as const
  try {
    openSteering().close()
    return {
      ...base,
      status: 'ok',
      summary: 'the kernel accepts the steering program (loaded and freed, never attached)',
      detail: 'the SYN-facts programs (tc and XDP) are not probed: loading them attaches them to interfaces',
    }
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause as { errno?: unknown; code?: unknown } | undefined
    const detail = err instanceof Error ? err.message : String(err)
    if (typeof cause?.code === 'string') {
      return { ...base, status: 'fail', summary: 'the eBPF addon does not load', detail, fix: `rebuild it for this Node and system: ${BUILD_FIX}` }
    }
    if (cause?.errno === EPERM) {
      return {
        ...base,
        status: 'fail',
        summary: 'the kernel refused to load the steering program: no privilege (EPERM)',
        detail,
        fix: 'run the sensor as root, or grant CAP_BPF and CAP_NET_ADMIN (systemd AmbientCapabilities=CAP_BPF CAP_NET_ADMIN)',
      }
    }
    return {
      ...base,
      status: 'fail',
      summary: 'the kernel rejected the steering program',
      detail,
      fix: 'a kernel 5.18 or later with CONFIG_BPF_SYSCALL=y and CONFIG_BPF_JIT=y (the libbpf log in the detail says which step failed)',
    }
  }
}

export interface OurProgram {
  readonly id: number
  readonly name: string
  readonly type: string
  readonly holders: readonly string[] // "pid 812 node", when bpftool knows them
  readonly links: readonly string[] // "netns 4026531840 (this namespace)", "xdp ifindex 2"
}

interface BpfProg {
  id?: unknown
  name?: unknown
  type?: unknown
  pids?: unknown
}
interface BpfLink {
  type?: unknown
  prog_id?: unknown
  netns_ino?: unknown
  ifindex?: unknown
}

function jsonArray(text: string): unknown[] {
  const parsed: unknown = JSON.parse(text)
  return Array.isArray(parsed) ? parsed : []
}

/**
 * Our programs among `bpftool --json prog show`, each with the links that attach it (`bpftool --json link show`).
 * bpftool lists every namespace's programs; a netns link names its namespace's inode, compared with `ownNetnsIno`.
 * Pure; throws only on text that is not JSON.
 */
export function parseOurPrograms(progJson: string, linkJson: string, ownNetnsIno: number | null): OurProgram[] {
  const links = jsonArray(linkJson) as BpfLink[]
  const ours: OurProgram[] = []
  for (const p of jsonArray(progJson) as BpfProg[]) {
    if (typeof p.id !== 'number' || typeof p.name !== 'string' || !p.name.startsWith(OUR_PREFIX)) continue
    const holders = (Array.isArray(p.pids) ? (p.pids as { pid?: unknown; comm?: unknown }[]) : []).map((h) => `pid ${String(h.pid)} ${String(h.comm)}`)
    const attached = links
      .filter((l) => l.prog_id === p.id)
      .map((l) => {
        if (typeof l.netns_ino === 'number') return `netns ${l.netns_ino}${l.netns_ino === ownNetnsIno ? ' (this namespace)' : ''}`
        if (typeof l.ifindex === 'number') return `${String(l.type)} ifindex ${l.ifindex}`
        return String(l.type)
      })
    ours.push({ id: p.id, name: p.name, type: String(p.type), holders, links: attached })
  }
  return ours
}

function describeProgram(p: OurProgram): string {
  const held = p.holders.length > 0 ? `, held by ${p.holders.join(', ')}` : ''
  const links = p.links.length > 0 ? `attached: ${p.links.join(', ')}` : 'not attached by a link'
  return `${p.name} (id ${p.id}, ${p.type}${held}): ${links}`
}

async function programsCheck(): Promise<Check> {
  const base = { id: 'ebpf.programs', monitor: 'ebpf' } as const
  const progs = await execBounded('bpftool', ['--json', 'prog', 'show'])
  if (progs.notFound) {
    return {
      ...base,
      status: 'warn',
      summary: 'bpftool is not installed: cannot tell whether another sensor already runs our programs',
      fix: 'apt-get install bpftool (Debian 12; Ubuntu: linux-tools-common linux-tools-$(uname -r))',
    }
  }
  if (progs.exitCode !== 0) {
    const why = progs.timedOut ? 'did not answer in time' : bpftoolError(progs.stdout) || firstLine(progs.stderr)
    return { ...base, status: 'warn', summary: 'bpftool cannot list the loaded programs', detail: why, fix: 'run the doctor as root' }
  }
  const links = await execBounded('bpftool', ['--json', 'link', 'show'])
  const ino = await stat('/proc/self/ns/net').then(
    (s) => s.ino,
    () => null,
  )
  const ours = parseOurPrograms(progs.stdout, links.exitCode === 0 ? links.stdout : '[]', ino)
  if (ours.length === 0) return { ...base, status: 'ok', summary: 'none of our BPF programs is loaded on this host' }
  const here = ours.some((p) => p.links.some((l) => l.endsWith('(this namespace)')))
  return {
    ...base,
    status: 'warn',
    summary: `${ours.length} of our BPF programs already loaded${here ? ', steering in this network namespace' : ''}`,
    detail: ours.map(describeProgram).join('\n'),
    fix: 'another sensor (or a test) runs monitor ebpf: two steering programs in one namespace compete; stop it first (kill PID)',
  }
}

/** bpftool --json reports its own failures as [{"error": "..."}] on stdout. */
function bpftoolError(stdout: string): string {
  try {
    const first = jsonArray(stdout)[0] as { error?: unknown } | undefined
    return typeof first?.error === 'string' ? first.error : ''
  } catch {
    return ''
  }
}
