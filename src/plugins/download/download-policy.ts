import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import { cidrContains, formatIpAddress, parseCidr, parseIpAddress, type CidrRange, type IpBytes } from '../../config/cidr.js'
import { AddressGuard } from '../../responders/address-guard.js'
import type { DownloadKit, ResolvedTarget } from '../plugin.js'

/**
 * Ranges no downloader connects to unless `plugins.downloads.allow` lists them: every range of the IANA
 * special-purpose registries that is not globally reachable. An attack string picks the URL, so without this list
 * any attacker could make the sensor fetch from the operator's own network or a cloud metadata service (SSRF).
 */
const NON_PUBLIC: readonly CidrRange[] = [
  '0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12', '192.0.0.0/24',
  '192.0.2.0/24', '192.88.99.0/24', '192.168.0.0/16', '198.18.0.0/15', '198.51.100.0/24', '203.0.113.0/24',
  '224.0.0.0/4', '240.0.0.0/4',
  '::/96', '64:ff9b:1::/48', '100::/64', '2001::/23', '2001:db8::/32', '3fff::/20', '5f00::/16', 'fc00::/7',
  'fe80::/10', 'ff00::/8',
].map(range)

/** Prefixes that carry an IPv4 address in their low 32 bits (NAT64) or in bits 16-47 (6to4): judged by that address. */
const NAT64 = range('64:ff9b::/96')
const SIX_TO_FOUR = range('2002::/16')

// A host name longer than DNS allows is not looked up at all.
const MAX_HOST_CHARS = 253

export interface DownloadPolicyOptions {
  readonly maxBytes: number
  readonly timeoutMs: number
  readonly maxRedirects: number
  readonly recentUrlTtlMs?: number // default 0: always fetch
  readonly allow: readonly string[] // CIDRs allowed although non-public (config: plugins.downloads.allow)
  readonly deny: readonly string[] // CIDRs refused although public (config: plugins.downloads.deny)
  /** Injectable for tests; default dns.lookup with all addresses (getaddrinfo: /etc/hosts, then DNS). */
  readonly lookupAll?: (host: string) => Promise<readonly string[]>
  /** The sensor's own addresses are always refused, even inside an allowed range; injectable for tests. */
  readonly guard?: AddressGuard
}

async function systemLookupAll(host: string): Promise<readonly string[]> {
  const answers = await lookup(host, { all: true, verbatim: true })
  return answers.map((a) => a.address)
}

/**
 * The address rules, caps and lookups every downloader shares (DownloadKit). A name is refused when any of its
 * addresses is refused, not only the one that would be used: a name that mixes a public and a private address is a
 * DNS-rebinding attempt, and the resolver's order is not ours to trust.
 */
export class DownloadPolicy implements DownloadKit {
  readonly maxBytes: number
  readonly timeoutMs: number
  readonly maxRedirects: number
  readonly recentUrlTtlMs: number
  readonly #allow: readonly CidrRange[]
  readonly #deny: readonly CidrRange[]
  readonly #lookupAll: (host: string) => Promise<readonly string[]>
  readonly #guard: AddressGuard

  constructor(options: DownloadPolicyOptions) {
    this.maxBytes = options.maxBytes
    this.timeoutMs = options.timeoutMs
    this.maxRedirects = options.maxRedirects
    this.recentUrlTtlMs = options.recentUrlTtlMs ?? 0
    this.#allow = options.allow.map(range)
    this.#deny = options.deny.map(range)
    this.#lookupAll = options.lookupAll ?? systemLookupAll
    this.#guard = options.guard ?? new AddressGuard({ deny: [] })
  }

  checkAddress(address: string): string | null {
    const ip = parseIpAddress(address)
    if (ip === null) return `"${address.slice(0, 64)}" is not an IP address`
    const text = formatIpAddress(ip)
    // Own addresses first: no allow entry may open the sensor itself (its API, its database's host) to a URL.
    const own = this.#guard.check(text)
    if (own === 'own-address') return `address ${text} is one of the sensor's own`
    for (const r of this.#deny) if (cidrContains(r, ip)) return `address ${text} is in the deny list (${r.text})`
    for (const r of this.#allow) if (cidrContains(r, ip)) return null
    const embedded = embeddedIpv4(ip)
    for (const r of NON_PUBLIC) if (cidrContains(r, ip)) return `address ${text} is not public (${r.text})`
    if (embedded !== null) {
      const inner = this.checkAddress(formatIpAddress(embedded))
      return inner === null ? null : `address ${text} embeds ${formatIpAddress(embedded)}: ${inner}`
    }
    // The guard's own special ranges (broadcast of an interface, ...) beyond the table above.
    if (own !== null) return `address ${text} is refused (${own})`
    return null
  }

  async resolve(host: string, signal: AbortSignal): Promise<ResolvedTarget> {
    const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
    if (isIP(bare) !== 0) return this.#verdict(bare, [bare])
    if (bare.length === 0 || bare.length > MAX_HOST_CHARS || !/^[A-Za-z0-9._-]+$/.test(bare)) {
      return { ok: false, outcome: 'resolve-failed', reason: `"${bare.slice(0, 64)}" is not a host name` }
    }
    let addresses: readonly string[]
    try {
      addresses = await raceAbort(this.#lookupAll(bare), signal)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).name
      return { ok: false, outcome: 'resolve-failed', reason: `${bare}: ${code}` }
    }
    if (addresses.length === 0) return { ok: false, outcome: 'resolve-failed', reason: `${bare}: no address` }
    return this.#verdict(bare, addresses)
  }

  #verdict(host: string, addresses: readonly string[]): ResolvedTarget {
    for (const address of addresses) {
      const refused = this.checkAddress(address)
      if (refused !== null) return { ok: false, outcome: 'refused', reason: addresses.length > 1 || address !== host ? `${host}: ${refused}` : refused }
    }
    const first = parseIpAddress(addresses[0] ?? '')
    if (first === null) return { ok: false, outcome: 'resolve-failed', reason: `${host}: unusable answer` }
    return { ok: true, address: formatIpAddress(first), family: first.family }
  }
}

/** The IPv4 address inside a NAT64 (64:ff9b::/96) or 6to4 (2002::/16) address; null for any other. */
function embeddedIpv4(ip: IpBytes): IpBytes | null {
  if (ip.family !== 6) return null
  if (cidrContains(NAT64, ip)) return { family: 4, bytes: ip.bytes.slice(12, 16) }
  if (cidrContains(SIX_TO_FOUR, ip)) return { family: 4, bytes: ip.bytes.slice(2, 6) }
  return null
}

function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error)
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error)
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}

function range(text: string): CidrRange {
  const result = parseCidr(text)
  if (!result.ok) throw new Error(`range ${text} is invalid: ${result.error}`)
  return result.range
}
