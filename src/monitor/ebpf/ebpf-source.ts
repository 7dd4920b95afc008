import { createServer, type Server, type Socket } from 'node:net'
import type { Logger } from 'pino'
import type { AddressFamily, Protocol } from '../../attack/attack.js'
import { HoneytrapError } from '../../core/errors.js'
import { acceptQueued } from '../../core/accept-queued.js'
import { HANDSHAKE_GRACE_MS, logHandshakeWait, waitForHandshakes } from '../../core/pending-handshakes.js'
import { ACCEPTED_SOCKET_OPTIONS } from '../../core/socket-options.js'
import type { AttemptHandler, MonitorStats, PacketSource } from '../packet-source.js'
import { ADVISED_SOMAXCONN, readSomaxconn, SOMAXCONN_FIX } from './accept-queue.js'
import { attachedLookupPrograms, openSteering, openUdpCatchAll, type SteeringHandle, type UdpCatchAllHandle } from './bpf-native.js'
import { socketFd } from '../socket-fd.js'
import { findCgroup2Root } from './cgroup2-root.js'
import { findLinkOwners } from './link-owners.js'
import { readPortOwners, type PortOwners } from './port-owners.js'
import { SynFactsTap } from './syn-facts-tap.js'
import type { SynRecord } from './syn-record.js'
import type { UdpDatagram } from './udp-record.js'

/** What the eBPF monitor hands its traffic to: the supervisor. */
export interface SteeredTarget {
  acceptSteered(socket: Socket): void
  expectSynFacts(on: boolean): void
  steeredDatagram(datagram: UdpDatagram): Promise<void>
  synFactsSeen(records: readonly SynRecord[]): void
  hasListener(family: AddressFamily, protocol: Protocol, port: number): boolean
  onListenerClosed(listener: ((protocol: Protocol, port: number) => void) | null): void
}

export interface EbpfSourceOptions {
  readonly target: SteeredTarget
  readonly isIgnored: (protocol: Protocol, port: number) => boolean // ignored and excluded ports: left to the kernel
  readonly includeLoopback: boolean
  readonly serviceScanMs: number // how often the ports real services hold are read again
  readonly interfaces: readonly string[] | null // where the XDP program reads SYN facts; null: all but lo, as they come and go
  readonly log: Logger
}

const PROTOCOLS: readonly Protocol[] = ['tcp', 'udp']
const STEERING_BACKLOG = 65_535
const MIN_BIND_WINDOW_MS = 5_000
// The steering program's name as the kernel keeps it (BPF_OBJ_NAME_LEN - 1 = 15 characters): how one sensor finds another.
const STEER_PROGRAM_NAME = 'honeytrap_steer'

/**
 * `monitor: ebpf`. A BPF sk_lookup program steers every new TCP connection and UDP flow, on every port not left to
 * the kernel, into two sockets of the sensor: one dual-stack TCP listener, whose accepted sockets carry the port the
 * attacker dialled, and one UDP socket the addon reads with each datagram's original destination. Nothing is held and
 * no port is bound per attempt for TCP; a UDP port gets its own sockets (both families) at its first datagram, so that
 * replies leave from it, and is then left to them.
 *
 * Left to the kernel's normal lookup (the pass map): ignored and excluded ports from the start; ports a real service
 * holds, read from /proc/net every `serviceScanMs`; UDP ports where the sensor holds both sockets; and, from the
 * moment of their bind, ports any process of the namespace binds (cgroup post_bind programs), until the scan has them. The program is attached through a link held by this process:
 * however the sensor exits, the kernel detaches it and the host behaves as without the sensor.
 */
export class EbpfSource implements PacketSource {
  readonly name = 'ebpf'
  readonly #o: EbpfSourceOptions
  readonly #log: Logger
  #steering: SteeringHandle | null = null
  #server: Server | null = null
  #udp: UdpCatchAllHandle | null = null
  #facts: SynFactsTap | null = null
  #scanTimer: NodeJS.Timeout | undefined
  #scanning = false
  #scanFallbackWarned = false
  #steered = false // the program was attached as this namespace's sensor: handshakes under way at stop are ours
  #ignored: Record<Protocol, Set<number>> = { tcp: new Set(), udp: new Set() }
  #passed: Record<Protocol, Set<number>> = { tcp: new Set(), udp: new Set() }
  #stats = { packets: 0, attempts: 0, unparsable: 0, verdictErrors: 0, held: 0 }

  constructor(options: EbpfSourceOptions) {
    this.#o = options
    this.#log = options.log.child({ component: 'monitor', monitor: 'ebpf' })
  }

  async start(_handler: AttemptHandler): Promise<void> {
    const steering = openSteering()
    this.#steering = steering
    try {
      this.#server = await this.#listen()
      this.#udp = openUdpCatchAll({ onDatagrams: (datagrams) => this.#onDatagrams(datagrams) })
      steering.setSocket('tcp', socketFd(this.#server))
      steering.setSocket('udp', this.#udp.fd)
      steering.setLoopback(this.#o.includeLoopback)
      for (const protocol of PROTOCOLS) {
        for (let port = 1; port <= 65_535; port++) if (this.#o.isIgnored(protocol, port)) this.#ignored[protocol].add(port)
      }
      this.#applyPasses(await readPortOwners(this.#onScanFallback))
      await this.#refuseSecondSensor()
      steering.attach()
      await this.#checkFirstSteering(steering)
      this.#steered = true
    } catch (err) {
      await this.stop()
      throw err
    }
    await this.#watchBinds(steering)
    await this.#openFacts()
    const somaxconn = await readSomaxconn()
    if (somaxconn !== null && somaxconn < ADVISED_SOMAXCONN) {
      this.#log.warn({ somaxconn, fix: SOMAXCONN_FIX }, 'accept queue capped by net.core.somaxconn: a fast scan will see retried handshakes')
    }
    this.#scanTimer = setInterval(() => void this.#scan(), this.#o.serviceScanMs).unref()
    // A UDP port the sensor stops holding is steered again at once: left passed until the next scan, its datagrams
    // would meet no socket and be refused.
    this.#o.target.onListenerClosed((protocol, port) => {
      if (protocol === 'udp' && this.#passed.udp.has(port) && !this.#ignored.udp.has(port)) this.#setPass('udp', port, false)
    })
    this.#log.info({ tcpPort: (this.#server.address() as { port: number }).port, udpPort: this.#udp.port, passed: { tcp: this.#passed.tcp.size, udp: this.#passed.udp.size } }, 'monitor started')
  }

  /**
   * Two sensors steering one namespace would split its connections between them by the kernel's program order, each
   * with half the picture, so a second one refuses to start, naming the first. Other sk_lookup programs (a load
   * balancer, another tool) are the operator's: a warning, since whichever runs last decides where a connection goes.
   */
  async #refuseSecondSensor(): Promise<void> {
    const programs = attachedLookupPrograms()
    const sensors = programs.filter((p) => p.name === STEER_PROGRAM_NAME)
    if (sensors.length > 0) throw await secondSensorError(sensors.map((p) => p.id))
    if (programs.length > 0) {
      this.#log.warn({ programs }, 'other sk_lookup programs are attached to this network namespace: they and the sensor may take each other\'s connections')
    }
  }

  /** Closes the race of two sensors starting at once: of the sensors' programs, the first attached keeps steering. */
  async #checkFirstSteering(steering: SteeringHandle): Promise<void> {
    const mine = steering.programId()
    const sensors = attachedLookupPrograms().filter((p) => p.name === STEER_PROGRAM_NAME)
    if (sensors.length > 0 && sensors[0]!.id !== mine) throw await secondSensorError(sensors.filter((p) => p.id !== mine).map((p) => p.id))
  }

  /**
   * Ports bound from now on in this namespace (a service starting, a plugin's FTP data port or TFTP reply port) are
   * left to the kernel from their bind, for a few scans of /proc/net, by which time the scan has them. Without it
   * such a port is steered to the sensor until the next scan, so this is a warning, not a failed start.
   */
  async #watchBinds(steering: SteeringHandle): Promise<void> {
    const windowMs = Math.max(MIN_BIND_WINDOW_MS, 3 * this.#o.serviceScanMs)
    const cgroup = await findCgroup2Root()
    if (cgroup === null) {
      this.#log.warn('bind watch unavailable: no cgroup v2 hierarchy is mounted; a port bound while the sensor runs is steered to it until the next scan')
      return
    }
    try {
      steering.watchBinds(windowMs, cgroup)
      this.#log.info({ cgroup, windowMs }, 'bind watch attached')
    } catch (err) {
      this.#log.warn({ err }, 'bind watch unavailable: a port bound while the sensor runs is steered to it until the next scan')
    }
  }

  /**
   * The XDP program that reports each SYN's header facts for the records. Without it the sensor still captures
   * everything (records then have no facts), so a failure here is a warning, not a failed start.
   */
  async #openFacts(): Promise<void> {
    const tap = new SynFactsTap({ interfaces: this.#o.interfaces, includeLoopback: this.#o.includeLoopback, onRecords: (records) => this.#o.target.synFactsSeen(records), unavailable: 'syn facts unavailable: records will have none', log: this.#log })
    if (!(await tap.open())) return
    this.#facts = tap
    this.#o.target.expectSynFacts(true)
  }

  async stop(): Promise<void> {
    clearInterval(this.#scanTimer)
    this.#o.target.onListenerClosed(null)
    this.#o.target.expectSynFacts(false)
    this.#facts?.close()
    this.#facts = null
    // The program first: from here on new connections meet the kernel's own lookup, as without the sensor.
    this.#steering?.close()
    this.#steering = null
    this.#udp?.close()
    this.#udp = null
    // Handshakes under way complete into the steering socket (their ACK finds them without the program), and those
    // completed are accepted and handed to the supervisor, which ends them as 'shutdown', rather than reset unrecorded
    // with the socket. Ours are on every port but those left to the kernel.
    if (this.#server !== null && this.#steered) {
      const passed = this.#passed.tcp
      logHandshakeWait(this.#log, await waitForHandshakes((port) => !passed.has(port), { graceMs: HANDSHAKE_GRACE_MS }))
    }
    if (this.#server !== null) await acceptQueued()
    // Then it stops accepting. Not awaited: close()'s callback waits for every accepted connection to end, and those
    // are the supervisor's sessions, which it ends after the monitor has stopped.
    this.#server?.close()
    this.#server = null
  }

  stats(): MonitorStats {
    const counters = this.#steering?.counters()
    return { ...this.#stats, packets: counters?.steered ?? this.#stats.packets }
  }

  #listen(): Promise<Server> {
    const server = createServer(ACCEPTED_SOCKET_OPTIONS, (socket) => {
      this.#stats.attempts++
      this.#o.target.acceptSteered(socket)
    })
    return new Promise((resolve, reject) => {
      server.once('error', (err) => reject(new HoneytrapError('HT_ERR_MONITOR_OPEN', `ebpf: cannot open the steering TCP socket: ${err.message}`, { cause: err })))
      // Port 0: any free port will do, the program steers every other port to it whatever it is. Its one accept queue
      // holds the handshakes of every port, so it asks for the most the kernel gives (net.core.somaxconn caps it;
      // 4,096 by default): at 3,000 new ports a second a queue of 511 overflowed whenever the event loop paused.
      server.listen({ host: '::', port: 0, ipv6Only: false, backlog: STEERING_BACKLOG }, () => resolve(server))
    })
  }

  #onDatagrams(datagrams: readonly UdpDatagram[]): void {
    for (const datagram of datagrams) {
      this.#stats.attempts++
      if (datagram.dstPort === 0) {
        this.#stats.unparsable++
        continue
      }
      this.#o.target.steeredDatagram(datagram).then(
        () => this.#passUdpIfHeld(datagram.dstPort),
        (err: unknown) => this.#log.warn({ err, port: datagram.dstPort }, 'steered datagram failed'),
      )
    }
  }

  /** Once the sensor holds a UDP port in both families, the kernel delivers to those sockets directly. */
  #passUdpIfHeld(port: number): void {
    if (this.#steering === null || this.#passed.udp.has(port)) return
    if (this.#o.target.hasListener(4, 'udp', port) && this.#o.target.hasListener(6, 'udp', port)) this.#setPass('udp', port, true)
  }

  readonly #onScanFallback = (err: unknown): void => {
    if (this.#scanFallbackWarned) return
    this.#scanFallbackWarned = true
    this.#log.warn({ err, fix: 'load the inet_diag, tcp_diag and udp_diag kernel modules (modprobe)' }, 'sock_diag cannot list listening sockets; reading /proc/net instead, which costs more on a busy host')
  }

  async #scan(): Promise<void> {
    if (this.#scanning || this.#steering === null) return
    this.#scanning = true
    try {
      this.#applyPasses(await readPortOwners(this.#onScanFallback))
    } catch (err) {
      this.#log.warn({ err }, 'reading the ports of real services failed')
    } finally {
      this.#scanning = false
    }
  }

  /** Brings the pass map to: ignored ports, ports real services hold, and UDP ports the sensor holds in both families. */
  #applyPasses(owners: PortOwners): void {
    const ownTcp = (this.#server?.address() as { port: number } | null)?.port
    const wanted: Record<Protocol, Set<number>> = { tcp: new Set(this.#ignored.tcp), udp: new Set(this.#ignored.udp) }
    for (const port of owners.tcp) if (port !== ownTcp) wanted.tcp.add(port)
    for (const port of owners.udp) {
      const held4 = this.#o.target.hasListener(4, 'udp', port)
      const held6 = this.#o.target.hasListener(6, 'udp', port)
      // A port only the sensor holds in one family stays steered: the other family's datagrams would find no socket.
      if ((!held4 && !held6) || (held4 && held6)) wanted.udp.add(port)
    }
    if (this.#udp !== null) wanted.udp.delete(this.#udp.port)
    for (const protocol of PROTOCOLS) {
      for (const port of this.#passed[protocol]) if (!wanted[protocol].has(port)) this.#setPass(protocol, port, false)
      for (const port of wanted[protocol]) if (!this.#passed[protocol].has(port)) this.#setPass(protocol, port, true)
    }
  }

  #setPass(protocol: Protocol, port: number, pass: boolean): void {
    this.#steering?.passPort(protocol, port, pass)
    if (pass) this.#passed[protocol].add(port)
    else this.#passed[protocol].delete(port)
  }
}

/** An interface's index from sysfs, or null when it is gone (or the name is not one). */
/** HT_ERR_MONITOR_OPEN naming the sensor already steering this namespace (its PID when /proc shows it). */
async function secondSensorError(programIds: readonly number[]): Promise<HoneytrapError> {
  const owners = (await findLinkOwners(programIds)).filter((pid) => pid !== process.pid)
  const who = owners.length === 0 ? `(program id ${programIds.join(', ')})` : `(PID ${owners.join(', ')})`
  return new HoneytrapError(
    'HT_ERR_MONITOR_OPEN',
    `another honeytrap-ts sensor ${who} already steers this network namespace with eBPF; stop it first, or run this sensor in another network namespace (ip netns exec)`,
  )
}
