import os from 'node:os'
import { performance } from 'node:perf_hooks'
import { cidrContains, parseCidr, parseIpAddress, type CidrRange, type IpBytes } from '../config/cidr.js'

/** Why an outbound connection to an address is refused; null means it is allowed. */
export type AddressVerdict = 'own-address' | 'special-address' | 'denied' | null

/** What an AddressGuard checks against; only `deny` comes from the config, the rest is for tests. */
export interface AddressGuardOptions {
  readonly deny: readonly CidrRange[] // operator's extra ranges (config), checked after the built-in rules
  readonly refreshMs?: number // how old the interface list may get before check() reads it again; default 5000 ms
  readonly interfaces?: () => ReturnType<typeof os.networkInterfaces> // injectable for tests
  readonly now?: () => number // milliseconds on any monotonic clock; default performance.now
}

/**
 * Ranges never connected to, whoever the peer claims to be. ::ffff:0:0/96 is absent because mapped addresses are
 * normalised to IPv4 and meet the IPv4 rules. The whole deprecated IPv4-compatible block ::/96 (RFC 4291 2.5.5.1,
 * which holds :: and ::1) is refused rather than normalised: Linux does not treat it as IPv4, but an automatic sit
 * tunnel would carry it to the embedded IPv4 host past the IPv4 rules, and no real peer uses it.
 */
const SPECIAL_RANGES: readonly CidrRange[] = [
  '0.0.0.0/8', // "this network"; 0.0.0.0 reaches the sensor itself
  '127.0.0.0/8', // loopback
  '169.254.0.0/16', // link-local, including cloud metadata services at 169.254.169.254
  '224.0.0.0/4', // multicast
  '240.0.0.0/4', // reserved, including the limited broadcast 255.255.255.255
  '::/96', // unspecified, loopback and IPv4-compatible
  'fe80::/10', // link-local
  'ff00::/8', // multicast
].map(builtinRange)

/** What the interface list said at one moment. */
interface Snapshot {
  readonly own: ReadonlySet<string> // keyOf() of every interface address
  readonly broadcast: ReadonlySet<string> // keyOf() of every IPv4 interface's directed broadcast address
  readonly known: boolean // false when the list could not be read: every non-special address then counts as own
}

const UNREAD: Snapshot = { own: new Set(), broadcast: new Set(), known: false }

/**
 * Decides whether the sensor may open a connection to an address (the mirror mode connects back to the attacker).
 * It fails closed: an address it cannot parse, or a moment when the interface list cannot be read, means refusal.
 */
export class AddressGuard {
  readonly #deny: readonly CidrRange[]
  readonly #refreshMs: number
  readonly #interfaces: () => ReturnType<typeof os.networkInterfaces>
  readonly #now: () => number
  #snapshot: Snapshot = UNREAD
  #takenAt = Number.NEGATIVE_INFINITY

  constructor(options: AddressGuardOptions) {
    this.#deny = options.deny
    this.#refreshMs = options.refreshMs ?? 5000
    this.#interfaces = options.interfaces ?? os.networkInterfaces
    this.#now = options.now ?? (() => performance.now())
  }

  /** The verdict for `address` (a socket's remoteAddress); reads the interface list when stale. Never throws. */
  check(address: string): AddressVerdict {
    try {
      const ip = parseIpAddress(address)
      if (ip === null) return 'special-address'
      for (const range of SPECIAL_RANGES) if (cidrContains(range, ip)) return 'special-address'
      const snapshot = this.#current()
      const key = keyOf(ip)
      if (snapshot.broadcast.has(key)) return 'special-address'
      if (!snapshot.known || snapshot.own.has(key)) return 'own-address'
      for (const range of this.#deny) if (cidrContains(range, ip)) return 'denied'
      return null
    } catch {
      // Unreachable by design; but a guard that throws would take the responder down with it, so refuse instead.
      return 'special-address'
    }
  }

  /** Reads the interface list now (e.g. after a network change is known to have happened). */
  refresh(): void {
    this.#takenAt = this.#now()
    this.#snapshot = readInterfaces(this.#interfaces)
  }

  #current(): Snapshot {
    const age = this.#now() - this.#takenAt
    // A negative age means the injected clock went backwards: do not trust the old list for an unbounded time.
    if (!(age >= 0 && age < this.#refreshMs)) this.refresh()
    return this.#snapshot
  }
}

function readInterfaces(interfaces: () => ReturnType<typeof os.networkInterfaces>): Snapshot {
  let table: ReturnType<typeof os.networkInterfaces>
  try {
    table = interfaces()
  } catch {
    // uv_interface_addresses can fail (restricted sandboxes); without the list no address is known to be foreign.
    return UNREAD
  }
  const own = new Set<string>()
  const broadcast = new Set<string>()
  for (const entries of Object.values(table)) {
    for (const entry of entries ?? []) {
      // A zone id ("fe80::1%eth0") only scopes a link-local address, which is refused as special anyway.
      const ip = parseIpAddress(entry.address.split('%')[0] ?? '')
      if (ip === null) continue
      own.add(keyOf(ip))
      const directed = ip.family === 4 ? directedBroadcast(ip, entry.netmask) : null
      if (directed !== null) broadcast.add(keyOf(directed))
    }
  }
  return { own, broadcast, known: true }
}

/** address | ~netmask, or null for /31 and /32 (RFC 3021), which have no broadcast address. */
function directedBroadcast(ip: IpBytes, netmask: string): IpBytes | null {
  const mask = parseIpAddress(netmask)
  if (mask === null || mask.family !== 4) return null
  let hostBits = 0
  for (const byte of mask.bytes) hostBits += 8 - popcount(byte)
  if (hostBits < 2) return null
  const bytes = ip.bytes.map((b, i) => b | (~(mask.bytes[i] ?? 0xff) & 0xff))
  return { family: 4, bytes }
}

function popcount(byte: number): number {
  let count = 0
  for (let b = byte; b !== 0; b &= b - 1) count++
  return count
}

/** A Set key: one character per byte, so IPv4 (4 characters) and IPv6 (16) keys can never collide. */
function keyOf(ip: IpBytes): string {
  return String.fromCharCode(...ip.bytes)
}

function builtinRange(text: string): CidrRange {
  const result = parseCidr(text)
  if (!result.ok) throw new Error(`built-in range ${text} is invalid: ${result.error}`)
  return result.range
}
