import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import type { Protocol } from '../../attack/attack.js'
import { HoneytrapError } from '../../core/errors.js'
import { parseSynBatch, type SynRecord } from './syn-record.js'
import { parseUdpBatch, type UdpDatagram } from './udp-record.js'

// src/monitor/ebpf and dist/monitor/ebpf are both three levels below the package root, where native/build/ lives.
const NATIVE_BUILD = fileURLToPath(new URL('../../../native/build/', import.meta.url))
export const DEFAULT_STEER_OBJECT = `${NATIVE_BUILD}bpf/steer.bpf.o`
export const DEFAULT_SYNFACTS_OBJECT = `${NATIVE_BUILD}bpf/synfacts.bpf.o`
const ADDON_PATH = `${NATIVE_BUILD}Release/honeytrap_bpf.node`

/** Keys of the steering program's socket map (native/bpf/steer.h). */
const SOCKET_KEYS = { tcp: 0, udp: 1, tcp4: 2, udp4: 3, tcp6: 4, udp6: 5 } as const
export type SteeringSocketKey = keyof typeof SOCKET_KEYS

export interface SteeringCounters {
  readonly steered: number
  readonly passed: number // left to the kernel on purpose (pass port, address filter, loopback)
  readonly noSocket: number // wanted steering, but the socket map had no socket for it
  readonly assignErrors: number
  readonly attached: boolean
}

/** The sk_lookup program, loaded; it steers nothing until attach(). Every method throws HoneytrapError on failure. */
export interface SteeringHandle {
  /** Attaches to the netns through a link held by this process, never pinned: process death detaches it. */
  attach(): void
  /**
   * Attaches the post_bind programs to a cgroup (the cgroup v2 root by default: every process), held the same way:
   * each port bound in this network namespace is left to the kernel for `windowMs` from its bind.
   */
  watchBinds(windowMs: number, cgroupPath?: string): void
  /** Puts a listening TCP or bound UDP socket in the map; null removes it (its traffic goes back to the kernel). */
  setSocket(key: SteeringSocketKey, fd: number | null): void
  /** pass = true: the port is left to the kernel's normal lookup (a real service, an excluded or ignored port). */
  passPort(protocol: Protocol, port: number, pass: boolean): void
  /** Steers only traffic to these addresses or prefixes ("198.18.0.1", "fd00::/8"); [] steers every address. */
  setAddresses(prefixes: readonly string[]): void
  /** Steers traffic arriving on lo too (off by default, like the NFQUEUE rules' includeLoopback). */
  setLoopback(on: boolean): void
  /** Uses the per-family keys tcp4/udp4/tcp6/udp6 instead of the dual-stack tcp/udp ones. */
  setPerFamily(on: boolean): void
  counters(): SteeringCounters
  /** The kernel's id of the loaded program, as attachedLookupPrograms lists it once attached. */
  programId(): number
  /** Detaches and frees the program and maps. Idempotent. */
  close(): void
}

/** Where the SYN-facts program runs on an interface: tc ingress through a tcx link (Linux 6.6+), or XDP's driver or generic mode. */
export type FactsHook = 'tcx' | 'native' | 'generic'
export interface FactsAttachment {
  readonly name: string
  readonly ifindex: number
  readonly mode: FactsHook
}

export interface SynFactsStats {
  readonly records: number // read from the ring buffer
  readonly lost: number // the ring was full in the kernel
  readonly dropped: number // JS was too far behind; records dropped in the addon
  readonly batches: number
  readonly unparsable: number
  readonly callbackErrors: number
}

export interface SynFactsHandle {
  interfaces(): readonly FactsAttachment[]
  /** Attaches to one more interface (one that appeared after the start). */
  attach(name: string): FactsAttachment
  /** Closes the link of that interface; false when it had none. */
  detach(name: string): boolean
  stats(): SynFactsStats
  /** Stops the reader thread and detaches from every interface. Idempotent; no records are delivered after it. */
  close(): void
}

export interface UdpCatchAllStats {
  readonly datagrams: number
  readonly dropped: number
  readonly batches: number
  readonly unparsable: number
  readonly callbackErrors: number
}

/** A dual-stack [::] UDP socket read with recvmsg, so each datagram comes with its original destination. */
export interface UdpCatchAllHandle {
  readonly fd: number // for SteeringHandle.setSocket('udp', fd)
  readonly port: number // the port it is bound to
  stats(): UdpCatchAllStats
  close(): void
}

interface NativeSteering {
  attach(): void
  watchBinds(windowMs: number, cgroupPath?: string): void
  setSocket(key: number, fd: number): void
  passPort(protocol: Protocol, port: number, pass: boolean): void
  setAddresses(prefixes: readonly string[]): void
  setSetting(name: 'loopback' | 'per-family', on: boolean): void
  counters(): SteeringCounters
  programId(): number
  close(): void
}
interface NativeSynFacts {
  interfaces(): FactsAttachment[]
  attach(name: string): FactsAttachment
  detach(name: string): boolean
  stats(): { records: number; lost: number; dropped: number; batches: number }
  close(): void
}
interface NativeUdp {
  fd(): number
  port(): number
  stats(): { datagrams: number; dropped: number; batches: number }
  close(): void
}
/** An sk_lookup program attached to a network namespace. */
export interface LookupProgram {
  readonly id: number
  readonly name: string // '' when it went away while being listed
}

interface Addon {
  attachedLookupPrograms(netnsPath?: string): LookupProgram[]
  listeningPorts(): { tcp: number[]; udp: number[] }
  openSteering(options: { objectPath: string; netnsPath?: string }): NativeSteering
  openSynFacts(options: { objectPath: string; interfaces: readonly string[]; onRecords: (batch: Buffer) => void; hook: 'auto' | 'xdp' }): NativeSynFacts
  openUdpCatchAll(options: { port?: number; maxPayloadBytes?: number; onDatagrams: (batch: Buffer) => void }): NativeUdp
}

let addon: Addon | null = null

// The only importer of the addon, loaded on first use so that every other command works without it built.
function loadAddon(): Addon {
  if (addon !== null) return addon
  try {
    addon = createRequire(import.meta.url)(ADDON_PATH) as Addon
  } catch (err) {
    throw new HoneytrapError('HT_ERR_MONITOR_OPEN', 'the eBPF addon is not built; run `npm run build:native` (needs clang and libbpf-dev)', { cause: err })
  }
  return addon
}

/** Runs one addon call; its Error (message naming the libbpf step and errno) becomes the cause of a HoneytrapError. */
function call<T>(what: string, fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    throw new HoneytrapError('HT_ERR_MONITOR_OPEN', `${what}: ${(err as Error).message}`, { cause: err })
  }
}

/** The sk_lookup programs attached to this process's netns (or `netnsPath`), in the order the kernel runs them. */
export function attachedLookupPrograms(netnsPath?: string): LookupProgram[] {
  const native = loadAddon()
  return call('ebpf sk_lookup query', () => (netnsPath === undefined ? native.attachedLookupPrograms() : native.attachedLookupPrograms(netnsPath)))
}

/**
 * The local ports of this process's netns that listening TCP sockets and unconnected UDP sockets hold, IPv4 and IPv6,
 * from sock_diag. Throws HT_ERR_MONITOR_OPEN when the kernel cannot answer (no inet_diag or udp_diag).
 */
export function listeningPorts(): { tcp: number[]; udp: number[] } {
  const native = loadAddon()
  return call('sock_diag listening ports', () => native.listeningPorts())
}

/** Loads the sk_lookup steering program for this process's netns (or `netnsPath`). */
export function openSteering(options: { readonly objectPath?: string; readonly netnsPath?: string } = {}): SteeringHandle {
  const native = loadAddon()
  const steering = call('ebpf steering', () =>
    native.openSteering({ objectPath: options.objectPath ?? DEFAULT_STEER_OBJECT, ...(options.netnsPath === undefined ? {} : { netnsPath: options.netnsPath }) }),
  )
  return {
    attach: () => call('ebpf steering attach', () => steering.attach()),
    watchBinds: (windowMs, cgroupPath) => call('ebpf bind watch', () => (cgroupPath === undefined ? steering.watchBinds(windowMs) : steering.watchBinds(windowMs, cgroupPath))),
    setSocket: (key, fd) => call(`ebpf steering socket ${key}`, () => steering.setSocket(SOCKET_KEYS[key], fd ?? -1)),
    passPort: (protocol, port, pass) => call(`ebpf steering pass ${port}/${protocol}`, () => steering.passPort(protocol, port, pass)),
    setAddresses: (prefixes) => call('ebpf steering addresses', () => steering.setAddresses(prefixes)),
    setLoopback: (on) => call('ebpf steering loopback', () => steering.setSetting('loopback', on)),
    setPerFamily: (on) => call('ebpf steering per-family', () => steering.setSetting('per-family', on)),
    counters: () => call('ebpf steering counters', () => steering.counters()),
    programId: () => call('ebpf steering program id', () => steering.programId()),
    close: () => steering.close(),
  }
}

export interface SynFactsOptions {
  readonly objectPath?: string
  readonly interfaces: readonly string[]
  /** Called with each batch; what it throws is counted in callbackErrors and goes no further. */
  readonly onRecords: (records: readonly SynRecord[]) => void
  /** 'auto' (default): tcx where the kernel has it, XDP otherwise; 'xdp': XDP only (the tests of that path). */
  readonly hook?: 'auto' | 'xdp'
}

/** Attaches the SYN-facts program to each interface and delivers its records in batches. */
export function openSynFacts(options: SynFactsOptions): SynFactsHandle {
  const native = loadAddon()
  let closed = false
  const own = { unparsable: 0, callbackErrors: 0 }
  const onRecords = (batch: Buffer): void => {
    if (closed) return
    const { records, unparsable } = parseSynBatch(batch)
    own.unparsable += unparsable
    try {
      if (records.length > 0) options.onRecords(records)
    } catch {
      own.callbackErrors++
    }
  }
  const facts = call('ebpf syn facts', () =>
    native.openSynFacts({ objectPath: options.objectPath ?? DEFAULT_SYNFACTS_OBJECT, interfaces: options.interfaces, onRecords, hook: options.hook ?? 'auto' }),
  )
  return {
    interfaces: () => facts.interfaces(),
    attach: (name) => call(`ebpf syn facts on ${name}`, () => facts.attach(name)),
    detach: (name) => facts.detach(name),
    stats: () => ({ ...facts.stats(), ...own }),
    close: () => {
      closed = true
      facts.close()
    },
  }
}

export interface UdpCatchAllOptions {
  readonly port?: number // 0 (default): any free port; sk_lookup steers every port to it whatever it is
  readonly maxPayloadBytes?: number // bytes kept per datagram, up to 65535 (the default)
  readonly onDatagrams: (datagrams: readonly UdpDatagram[]) => void
}

/** Opens the catch-all UDP socket, read on the addon's own thread. */
export function openUdpCatchAll(options: UdpCatchAllOptions): UdpCatchAllHandle {
  const native = loadAddon()
  let closed = false
  const own = { unparsable: 0, callbackErrors: 0 }
  const onDatagrams = (batch: Buffer): void => {
    if (closed) return
    const { datagrams, unparsable } = parseUdpBatch(batch)
    own.unparsable += unparsable
    try {
      if (datagrams.length > 0) options.onDatagrams(datagrams)
    } catch {
      own.callbackErrors++
    }
  }
  const udp = call('ebpf udp catch-all', () =>
    native.openUdpCatchAll({
      onDatagrams,
      ...(options.port === undefined ? {} : { port: options.port }),
      ...(options.maxPayloadBytes === undefined ? {} : { maxPayloadBytes: options.maxPayloadBytes }),
    }),
  )
  return {
    fd: udp.fd(),
    port: udp.port(),
    stats: () => ({ ...udp.stats(), ...own }),
    close: () => {
      closed = true
      udp.close()
    },
  }
}
