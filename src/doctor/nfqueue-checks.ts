import { access, readFile } from 'node:fs/promises'
import { release } from 'node:os'
import pino from 'pino'

import { loadNfqueueAddon } from '../monitor/nfqueue-source.js'
import { loadSocketAddon } from '../monitor/served-socket.js'
import { parseIptablesVersion, type IptablesVersion } from '../rules/iptables-listing.js'
import { rulesStatus, type RulesStatus } from '../rules/iptables-runner.js'
import { loadNfnetlinkQueue, NFNETLINK_QUEUE_PATH, type QueueInfo } from '../rules/nfqueue-status.js'
import { execBounded, firstLine, guardCheck, CHECK_TIMEOUT_MS, type Check } from './checks.js'
import { holds, type Privileges } from './kernel-checks.js'

/**
 * What `monitor: nfqueue` needs: the nfnetlink_queue module, iptables (and ip6tables) with a known backend, the
 * nfqueue addon, free queues; and whether our rules are already in place. Only reads: no module is loaded, no rule
 * touched, no queue bound.
 */

// iptables waits up to 10 s for the xtables lock (rules-exec), and the status reads each family once or twice.
const RULES_TIMEOUT_MS = 25_000
const INSTALL_IPTABLES = 'apt-get install iptables (Debian, Ubuntu)'

/** Every nfqueue check, in display order. Never throws. */
export async function nfqueueChecks(p: Privileges): Promise<Check[]> {
  const guard = (id: string, onError: 'fail' | 'warn', body: () => Promise<Check | Check[]> | Check, timeoutMs = CHECK_TIMEOUT_MS) =>
    guardCheck({ id, monitor: 'nfqueue', timeoutMs, onError }, body)
  const versions = Promise.all([loadVersion('iptables'), loadVersion('ip6tables')])
  const groups = await Promise.all([
    guard('nfqueue.module', 'fail', moduleCheck),
    guard('nfqueue.iptables', 'fail', async () => iptablesCheck((await versions)[0])),
    guard('nfqueue.ip6tables', 'warn', async () => {
      const [v4, v6] = await versions
      return ip6tablesCheck(v6, v4)
    }),
    guard('nfqueue.addon', 'fail', addonCheck),
    guard('nfqueue.queue-skip', 'warn', queueSkipCheck),
    guard('nfqueue.queues', 'warn', queuesCheck),
    guard('nfqueue.rules', 'warn', () => rulesCheck(p), RULES_TIMEOUT_MS),
  ])
  return groups.flat()
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  )
}

async function moduleCheck(): Promise<Check> {
  const base = { id: 'nfqueue.module', monitor: 'nfqueue' } as const
  // The file exists in every namespace once the module is in the kernel, built in or loaded; reading it needs root.
  if (await exists(NFNETLINK_QUEUE_PATH)) return { ...base, status: 'ok', summary: 'nfnetlink_queue is in the kernel (loaded or built in)' }
  const dry = await execBounded('modprobe', ['-n', '-q', 'nfnetlink_queue'])
  if (dry.exitCode === 0) {
    return {
      ...base,
      status: 'warn',
      summary: 'nfnetlink_queue is not loaded, but modprobe can load it',
      detail: 'the kernel also loads it by itself when the sensor first binds a queue as root',
      fix: 'modprobe nfnetlink_queue; to load it at boot: echo nfnetlink_queue > /etc/modules-load.d/honeytrap.conf',
    }
  }
  const modules = `/lib/modules/${release()}`
  const modprobeSaid = firstLine(dry.stderr) || `exit ${dry.exitCode ?? 'killed'}`
  const why = dry.notFound ? 'modprobe is not installed' : (await exists(modules)) ? `modprobe: ${modprobeSaid}` : `${modules} does not exist`
  return {
    ...base,
    status: 'fail',
    summary: 'nfnetlink_queue is neither loaded nor loadable',
    detail: why,
    fix: dry.notFound
      ? 'apt-get install kmod, then modprobe nfnetlink_queue'
      : `install this kernel's modules (Debian: apt-get install linux-image-${release()}); a kernel built without ` +
        'CONFIG_NETFILTER_NETLINK_QUEUE cannot run monitor nfqueue: use ebpf or pcap',
  }
}

interface ToolVersion {
  readonly installed: boolean
  readonly version: IptablesVersion
  readonly error: string // why -V failed, '' when it did not
}

async function loadVersion(binary: 'iptables' | 'ip6tables'): Promise<ToolVersion> {
  const result = await execBounded(binary, ['-V'])
  const version = parseIptablesVersion(`${result.stdout}\n${result.stderr}`)
  const error = result.exitCode === 0 ? '' : result.timedOut ? `${binary} -V did not answer in time` : firstLine(result.stderr)
  return { installed: !result.notFound, version, error }
}

function describeTool(binary: string, v: ToolVersion): string {
  return `${binary} ${v.version.version || '(version unknown)'}, ${v.version.backend} backend`
}

function iptablesCheck(v: ToolVersion): Check {
  const base = { id: 'nfqueue.iptables', monitor: 'nfqueue' } as const
  if (!v.installed) return { ...base, status: 'fail', summary: 'iptables is not installed', fix: INSTALL_IPTABLES }
  if (v.error !== '') return { ...base, status: 'fail', summary: 'iptables -V failed', detail: v.error, fix: `reinstall it: ${INSTALL_IPTABLES}` }
  if (v.version.backend === 'unknown') {
    return { ...base, status: 'warn', summary: describeTool('iptables', v), detail: 'iptables -V names no backend', fix: 'update-alternatives --config iptables' }
  }
  return { ...base, status: 'ok', summary: describeTool('iptables', v) }
}

function ip6tablesCheck(v6: ToolVersion, v4: ToolVersion): Check {
  const base = { id: 'nfqueue.ip6tables', monitor: 'nfqueue' } as const
  if (!v6.installed) {
    return { ...base, status: 'warn', summary: 'ip6tables is not installed: IPv6 attempts will not be captured', fix: INSTALL_IPTABLES }
  }
  if (v6.error !== '') return { ...base, status: 'warn', summary: 'ip6tables -V failed: IPv6 rules may be skipped', detail: v6.error }
  const b4 = v4.version.backend
  const b6 = v6.version.backend
  if (v4.installed && b4 !== 'unknown' && b6 !== 'unknown' && b4 !== b6) {
    return {
      ...base,
      status: 'warn',
      summary: `${describeTool('ip6tables', v6)}, but iptables uses ${b4}`,
      fix: 'point both at the same backend: update-alternatives --config iptables; update-alternatives --config ip6tables',
    }
  }
  return { ...base, status: 'ok', summary: describeTool('ip6tables', v6) }
}

// Where a module is in the kernel already, built in or loaded, its name is in one of these.
const MATCHES_LOADED = ['/proc/net/ip_tables_matches', '/proc/net/ip6_tables_matches']

/**
 * rules.skipQueueForServedPorts (on by default): the `-m socket` rule needs xt_socket, and marking the listeners the
 * socket addon. Without either, every SYN still goes through the queue; only the first is fatal to `iptables install`.
 */
async function queueSkipCheck(): Promise<Check> {
  const loaded = await Promise.all(MATCHES_LOADED.map((path) => readFile(path, 'utf8').catch(() => '')))
  const socketMatch = loaded.some((text) => text.split('\n').includes('socket')) || (await execBounded('modprobe', ['-n', '-q', 'xt_socket'])).exitCode === 0
  let addonError: string | null = null
  try {
    loadSocketAddon()
  } catch (err) {
    addonError = firstLine((err as Error).message)
  }
  return queueSkipVerdict({ socketMatch, addonError })
}

/** The queue-skip check from what was found: whether xt_socket is in the kernel (or loadable), why the addon failed. Pure. */
export function queueSkipVerdict(found: { readonly socketMatch: boolean; readonly addonError: string | null }): Check {
  const base = { id: 'nfqueue.queue-skip', monitor: 'nfqueue' } as const
  if (!found.socketMatch) {
    return {
      ...base,
      status: 'warn',
      summary: 'xt_socket is neither loaded nor loadable: iptables install fails on the -m socket rule',
      fix: 'set rules.skipQueueForServedPorts: false (every SYN then goes through the queue), or use a kernel with CONFIG_NETFILTER_XT_MATCH_SOCKET',
    }
  }
  if (found.addonError !== null) {
    return {
      ...base,
      status: 'warn',
      summary: 'the socket addon does not load: SYNs to ports already served go through the queue',
      detail: found.addonError,
      fix: 'apt-get install clang libbpf-dev build-essential, then npm run build:native',
    }
  }
  return { ...base, status: 'ok', summary: 'SYNs to ports already served can skip the queue (xt_socket and the socket addon are there)' }
}

function addonCheck(): Check {
  const base = { id: 'nfqueue.addon', monitor: 'nfqueue' } as const
  try {
    // Loaded, never opened: opening would bind a queue.
    loadNfqueueAddon()
    return { ...base, status: 'ok', summary: 'the nfqueue addon loads' }
  } catch (err) {
    return {
      ...base,
      status: 'fail',
      summary: 'the nfqueue addon does not load',
      detail: firstLine((err as Error).message),
      fix: 'apt-get install libnetfilter-queue-dev build-essential python3, then npm ci (or npm rebuild nfqueue)',
    }
  }
}

/** "portid 812 (pid 812, node)": the first netlink socket of a process gets its pid as portid, later ones do not. */
async function describeHolder(q: QueueInfo): Promise<string> {
  const comm = await readFile(`/proc/${q.portId}/comm`, 'utf8').catch(() => null)
  const who = comm === null ? 'not a pid: a further socket of some process' : `pid ${q.portId}, ${comm.trim()}`
  return `queue ${q.queue}: portid ${q.portId} (${who})`
}

async function queuesCheck(): Promise<Check> {
  const base = { id: 'nfqueue.queues', monitor: 'nfqueue' } as const
  const table = await loadNfnetlinkQueue()
  if (!table.available) {
    if (!(await exists(NFNETLINK_QUEUE_PATH))) return { ...base, status: 'ok', summary: 'no queue is bound (nfnetlink_queue is not loaded)' }
    return {
      ...base,
      status: 'warn',
      summary: `cannot read ${NFNETLINK_QUEUE_PATH} (root only): bound queues unknown`,
      fix: 'run the doctor as root to see which queues are taken',
    }
  }
  if (table.queues.length === 0) return { ...base, status: 'ok', summary: 'no NFQUEUE is bound in this network namespace' }
  const holders = await Promise.all(table.queues.map(describeHolder))
  return {
    ...base,
    status: 'warn',
    summary: `${table.queues.length} queue(s) already bound: ${table.queues.map((q) => q.queue).join(', ')}`,
    detail: holders.join('\n'),
    fix: 'a queue has one reader: stop the program holding it (kill PID), or give the sensor other queues (--queue N, monitor.queue)',
  }
}

async function rulesCheck(p: Privileges): Promise<Check> {
  const base = { id: 'nfqueue.rules', monitor: 'nfqueue' } as const
  // Capabilities, not the uid: root stripped of them (a container, setpriv) cannot list the rules either.
  if (!(holds(p, 'CAP_NET_ADMIN') && holds(p, 'CAP_NET_RAW'))) {
    return { ...base, status: 'warn', summary: 'cannot read the firewall rules without CAP_NET_ADMIN and CAP_NET_RAW', fix: 'run the doctor as root' }
  }
  let status: RulesStatus
  try {
    status = await rulesStatus(0, { log: pino({ level: 'silent' }) })
  } catch (err) {
    // Its errors name the failing iptables command and the fix already (HT_ERR_RULES).
    return { ...base, status: 'warn', summary: 'cannot read the firewall rules', detail: (err as Error).message }
  }
  const installed = status.families.filter((f) => f.skipped === null && f.tables.some((t) => t.chainPresent || t.jumps.length > 0))
  const notes = status.families.flatMap((f) => [
    ...f.legacyTables.map((t) => `IPv${f.family}: legacy table ${t} is loaded beside nf_tables; its rules apply too`),
    ...f.notes.map((n) => `IPv${f.family}: ${n}`),
  ])
  const skipped = status.families.filter((f) => f.skipped !== null).map((f) => `IPv${f.family} skipped: ${f.skipped ?? ''}`)
  const detail = [...notes, ...skipped].join('\n')
  const extra = detail === '' ? {} : { detail }
  if (installed.length === 0) {
    const summary = 'the HONEYTRAP chain is not installed (honeytrap-ts run installs it at start)'
    if (notes.length === 0) return { ...base, status: 'ok', summary, ...extra }
    return { ...base, status: 'warn', summary, ...extra, fix: 'inspect the other rules: iptables-legacy -S; iptables -S' }
  }
  const shape = installed.map((f) => `IPv${f.family}: ${f.tables.map((t) => `${t.table} chain ${t.chainPresent ? 'present' : 'absent'}, ${t.jumps.length} jump(s) from INPUT`).join(', ')}`)
  const broken = installed.some((f) => f.tables.some((t) => !t.chainPresent || t.jumps.length !== 1))
  const bound = status.queue.bound
  const summary = `the HONEYTRAP rules are installed (${shape.join('; ')})${bound ? ', queue 0 is bound' : ''}`
  if (!broken && notes.length === 0) return { ...base, status: 'ok', summary, ...extra }
  return {
    ...base,
    status: 'warn',
    summary,
    ...extra,
    fix: 'honeytrap-ts iptables status shows what differs; honeytrap-ts iptables remove (or install) puts it right',
  }
}
