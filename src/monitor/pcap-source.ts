import { createRequire } from 'node:module'
import { isIP } from 'node:net'
import { networkInterfaces } from 'node:os'
import type { Logger } from 'pino'
import type { PortRange } from '../config/port-spec.js'
import { HoneytrapError } from '../core/errors.js'
import { parsePacket } from './ip-packet.js'
import { parseLinkTypeName, stripLinkHeader, type LinkType } from './link-layer.js'
import type { AttemptHandler, ConnectionAttempt, MonitorStats, PacketSource } from './packet-source.js'

export interface PcapSourceOptions {
  readonly interface: string // a device name, or 'any' (every interface, Linux cooked headers)
  readonly exclude: readonly PortRange[] // never reported (ssh and whatever else must not depend on the sensor)
  // The host's addresses: only packets to them are attempts. Default: every address of a non-loopback interface, plus
  // those of the capture interface itself, read once at start (an address added later is not seen until a restart).
  readonly localAddresses?: readonly string[]
  readonly bufferBytes: number // the kernel capture buffer: absorbs bursts while the event loop is busy
  readonly snapLength: number // bytes of each frame copied to JavaScript: headers only (256 covers VLAN + IPv6 + TCP options)
  readonly log: Logger
}

/** The part of the `cap` addon (mscdex/cap, MIT) this file uses; it ships no types. */
interface CapHandle {
  /** Opens a live capture; returns the link-type name. Throws with libpcap's message. */
  open(device: string, filter: string, bufferBytes: number, buffer: Buffer): string
  close(): boolean
  on(event: 'packet', listener: (copiedBytes: number, truncated: boolean) => void): unknown
}
export interface CapModule {
  readonly Cap: { new (): CapHandle; deviceList(): readonly { readonly name: string }[] }
}

const TCP_SYN = 0x02
const TCP_ACK = 0x10
// IPv6 extension headers ip-packet.ts walks. The filter cannot follow a chain, so packets whose first next-header is
// one of these go to userspace unfiltered by flags and ports, and #isAttempt decides on the parsed packet.
const IPV6_EXTENSIONS = [0, 43, 44, 51, 60, 135, 139, 140]

// cap 0.2.1 aborts the process (a libuv assertion in uv_poll_stop) when it garbage-collects a handle whose open()
// threw: its destructor stops a poll handle that was never started, and close() does the same. A handle that failed
// to open is therefore kept reachable for the life of the process. There are few: a failed open ends start-up.
const failedHandles: CapHandle[] = []
// The same for a handle that was open and is closed: cap's close() stops its poll handle but never uv_close()s it,
// and the handle lives inside the C++ object. Once that object is collected, libuv's handle queue points into freed
// memory, and walking it at exit crashed the process (SIGSEGV at a SIGTERM, now and then). Kept reachable, the object
// is never freed: one small object per capture closed, and a sensor closes one, at exit.
const closedHandles: CapHandle[] = []

// The only importer of the addon (doctor asks it too). Loaded lazily so commands that never capture (attacks list,
// export) work on a machine where it was not built.
export function loadCapAddon(): CapModule {
  const require = createRequire(import.meta.url)
  return require('cap') as CapModule
}

/**
 * Connection attempts seen by a live libpcap capture, for hosts without NFQUEUE: inbound TCP SYN (without ACK) and
 * UDP datagrams to the host's own addresses, minus the excluded ports. A BPF filter in the kernel does most of the
 * choosing; each parsed packet is checked again here, because the filter cannot see past IPv6 extension headers.
 *
 * A capture only observes, so nothing is held: the handler's promise is only watched for errors, and `held` stays 0.
 * The cost is the first attempt at each new port: the kernel has already answered the SYN to a closed port with a
 * RST (and a datagram with ICMP port unreachable) by the time the handler opens a listener, so that attempt is lost
 * to the attacker's retry or next scan; only later attempts reach the listener.
 *
 * Without connection tracking every UDP datagram is an attempt, including replies to the host's own UDP clients
 * (DNS answers to an ephemeral port); the supervisor finds those ports owned by their sockets. cap 0.2.1 exposes no
 * pcap_stats(), so kernel drops are not counted; it also always captures in promiscuous mode with a 65,535-byte
 * snap length (our `snapLength` bounds only the copy into JavaScript), and prints a libpcap warning on stderr when the
 * interface has no IPv4 address.
 */
export class PcapSource implements PacketSource {
  readonly name = 'pcap'
  readonly #o: PcapSourceOptions
  readonly #log: Logger
  readonly #frame: Buffer
  #handler: AttemptHandler | null = null
  #cap: CapHandle | null = null
  #linkType: LinkType = 'ethernet'
  #stats = { packets: 0, attempts: 0, unparsable: 0, verdictErrors: 0, held: 0 }

  constructor(options: PcapSourceOptions) {
    this.#o = options
    this.#frame = Buffer.alloc(options.snapLength)
    this.#log = options.log.child({ component: 'monitor', monitor: 'pcap', interface: options.interface })
  }

  start(handler: AttemptHandler): void {
    let addon: CapModule
    try {
      addon = loadCapAddon()
    } catch (err) {
      throw new HoneytrapError('HT_ERR_MONITOR_OPEN', 'the cap addon is not built; run `npm ci` (needs libpcap-dev, see README)', { cause: err })
    }
    const device = this.#o.interface
    // The filter depends on the link type, which only an open capture tells; a filter that fails to compile would
    // leave a handle that must never be freed (see failedHandles), so the type is learnt first from an unfiltered one.
    const probe = this.#open(addon, '')
    probe.handle.close()
    closedHandles.push(probe.handle)
    const linkType = parseLinkTypeName(probe.linkName)
    if (linkType === null) {
      throw new HoneytrapError('HT_ERR_MONITOR_OPEN', `cannot capture on ${device}: unsupported link type "${probe.linkName}"; use an Ethernet, raw IP or cooked ("any") interface`)
    }
    const addresses = this.#o.localAddresses ?? findLocalAddresses(device)
    const bad = addresses.find((a) => isIP(a) === 0)
    if (bad !== undefined) throw new HoneytrapError('HT_ERR_MONITOR_OPEN', `cannot capture on ${device}: "${bad}" is not an IP address`)
    if (addresses.length === 0) {
      throw new HoneytrapError('HT_ERR_MONITOR_OPEN', `cannot capture on ${device}: the host has no address outside loopback; configure one or list the local addresses`)
    }
    const filter = buildCaptureFilter({ linkType, localAddresses: addresses, exclude: this.#o.exclude })
    const { handle } = this.#open(addon, filter)
    this.#linkType = linkType
    this.#handler = handler
    this.#cap = handle
    handle.on('packet', (copiedBytes) => this.#onFrame(copiedBytes))
    this.#log.info({ linkType, addresses, bufferBytes: this.#o.bufferBytes, snapLength: this.#o.snapLength }, 'monitor started')
    this.#log.debug({ filter }, 'capture filter')
  }

  async stop(): Promise<void> {
    this.#handler = null
    const handle = this.#cap
    this.#cap = null
    // Stops polling the capture socket and closes it (after the current batch if called from a handler), which lets
    // the event loop end.
    if (handle !== null) {
      handle.close()
      closedHandles.push(handle)
    }
  }

  stats(): MonitorStats {
    return { ...this.#stats }
  }

  #open(addon: CapModule, filter: string): { handle: CapHandle; linkName: string } {
    const handle = new addon.Cap()
    try {
      return { handle, linkName: handle.open(this.#o.interface, filter, this.#o.bufferBytes, this.#frame) }
    } catch (err) {
      failedHandles.push(handle)
      const message = (err as Error).message
      throw new HoneytrapError('HT_ERR_MONITOR_OPEN', `cannot capture on ${this.#o.interface}: ${message}; ${openHint(this.#o.interface, message)}`, { cause: err })
    }
  }

  // Called by the addon inside its read loop: nothing thrown here may escape (it would end the process).
  #onFrame(copiedBytes: number): void {
    try {
      this.#stats.packets++
      const frame = this.#frame.subarray(0, copiedBytes)
      const link = stripLinkHeader(this.#linkType, frame)
      const parsed = link.ok ? parsePacket(frame.subarray(link.offset)) : link
      if (!parsed.ok) {
        // A frame the host does not take as addressed to it (see link-layer.ts) is traffic, not a parse failure.
        if (parsed.reason === 'not-for-host' || parsed.reason === 'tagged-copy') return
        this.#stats.unparsable++
        if (this.#log.isLevelEnabled('trace')) this.#log.trace({ reason: parsed.reason, len: copiedBytes }, 'packet not parsed')
        return
      }
      if (!this.#isAttempt(parsed.attempt)) return
      this.#stats.attempts++
      const handler = this.#handler
      if (handler === null) return
      const pending = handler(parsed.attempt)
      if (pending !== undefined) pending.catch((err: unknown) => this.#log.warn({ err }, 'attempt handling failed'))
    } catch (err) {
      this.#log.warn({ err }, 'attempt handling failed')
    }
  }

  #isAttempt(attempt: ConnectionAttempt): boolean {
    if (attempt.protocol === 'tcp' && ((attempt.facts.tcpFlags ?? 0) & (TCP_SYN | TCP_ACK)) !== TCP_SYN) return false
    const port = attempt.dstPort
    return !this.#o.exclude.some((r) => r.protocols.includes(attempt.protocol) && port >= r.from && port <= r.to)
  }
}

function openHint(device: string, message: string): string {
  if (/no such device/i.test(message)) return `no interface named "${device}" (see \`ip link\`); "any" captures on all of them`
  if (/permitted|permission/i.test(message)) return 'run as root, or give node CAP_NET_RAW'
  return 'check that the interface is up and that libpcap can capture on it (tcpdump -i <interface>)'
}

/** The addresses packets must be sent to, to be attempts: loopback interfaces count only when captured on. */
function findLocalAddresses(device: string): string[] {
  const found = new Set<string>()
  for (const [name, addresses] of Object.entries(networkInterfaces())) {
    for (const a of addresses ?? []) {
      if (!a.internal || name === device) found.add(a.address.replace(/%.*$/, ''))
    }
  }
  return [...found]
}

export interface CaptureFilterOptions {
  readonly linkType: LinkType
  readonly localAddresses: readonly string[] // checked with isIP by the caller: they are written into the filter
  readonly exclude: readonly PortRange[]
}

/**
 * The BPF filter (pcap-filter(7) syntax): TCP with SYN and without ACK, or UDP, sent to a local address from a
 * non-local one (a host talking to itself is not an attack, as with rules.includeLoopback off), minus excluded ports.
 * libpcap's `tcp[...]` and port tests follow only an IPv6 header whose next header is TCP or UDP, so IPv6 TCP flags
 * are read at the fixed offset 40 + 13, and IPv6 packets that start with an extension header go up unfiltered.
 *
 * VLAN tags on Ethernet: Linux moves a frame's outer tag out of the packet before capture filters run, so the first
 * branch already takes a single-tagged frame; the `vlan` branch (`vlan` shifts every later offset by 4) is for
 * systems that leave the tag in. A double-tagged (Q-in-Q) frame matches neither on Linux and is not seen.
 *
 * Direction. A cooked capture ("any") also sees the host's own packets leaving, so it asks for `inbound`, which reads
 * the packet type in the cooked header. On Ethernet `inbound` is an ancillary load only the kernel can evaluate, and
 * with it the capture lost the first matching packet after opening (Linux 6.18, libpcap 1.10.3; presumably one that
 * libpcap filtered again in userland), so Ethernet does without: an Ethernet interface carries no outgoing packet to
 * a local address, and `not src host` already drops the host's own.
 */
export function buildCaptureFilter(options: CaptureFilterOptions): string {
  const either = (parts: readonly string[]): string => `(${parts.join(' or ')})`
  const toLocal = either(options.localAddresses.map((a) => `dst host ${a}`))
  const fromLocal = either(options.localAddresses.map((a) => `src host ${a}`))
  const tcp4 = '(ip and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn)'
  const tcp6 = '(ip6 and ip6[6] == 6 and ip6[53] & 0x12 == 0x02)'
  const ext6 = `(ip6 and ${either(IPV6_EXTENSIONS.map((n) => `ip6[6] == ${n}`))})`
  const excluded = options.exclude.flatMap((r) => {
    const ports = r.from === r.to ? `port ${r.from}` : `portrange ${r.from}-${r.to}`
    return r.protocols.map((p) => ` and not (${p} dst ${ports})`)
  })
  const body = `${toLocal} and not ${fromLocal} and (${tcp4} or ${tcp6} or udp or ${ext6})${[...new Set(excluded)].join('')}`
  const framed = options.linkType === 'ethernet' ? `((${body}) or (vlan and (${body})))` : `(${body})`
  return options.linkType === 'linux-sll' || options.linkType === 'linux-sll2' ? `inbound and ${framed}` : framed
}
