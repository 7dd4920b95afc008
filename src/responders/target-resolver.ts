import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'

export interface ResolvedAddress {
  readonly address: string
  readonly family: 4 | 6
}

export interface TargetResolverOptions {
  readonly ttlMs: number // a resolved name is reused this long
  readonly timeoutMs: number // a lookup that takes longer counts as failed
  readonly failureTtlMs?: number // a failed name is not looked up again for this long (default min(ttl, 5 s))
  /** Injectable for tests; default dns.lookup (getaddrinfo: /etc/hosts, then DNS, as the system resolves). */
  readonly lookup?: (host: string) => Promise<ResolvedAddress>
  readonly now?: () => number
}

interface Entry {
  readonly result: ResolvedAddress | null // null: the lookup failed
  readonly expiresAtMs: number
}

async function systemLookup(host: string): Promise<ResolvedAddress> {
  const { address, family } = await lookup(host, { verbatim: true })
  return { address, family: family === 6 ? 6 : 4 }
}

/**
 * Resolves proxy target host names with a cache. Only names from the config ever reach it, so the cache is bounded
 * by the config. Concurrent lookups of one name share one query; failures are cached briefly too, so a dead name
 * server costs one timeout per interval rather than one per attacker connection.
 */
export class TargetResolver {
  readonly #o: TargetResolverOptions
  readonly #lookup: (host: string) => Promise<ResolvedAddress>
  readonly #now: () => number
  readonly #cache = new Map<string, Entry>()
  readonly #pending = new Map<string, Promise<ResolvedAddress | null>>()
  lookups = 0
  failures = 0

  constructor(options: TargetResolverOptions) {
    this.#o = options
    this.#lookup = options.lookup ?? systemLookup
    this.#now = options.now ?? Date.now
  }

  /** The address for `host`, or null when it does not resolve (in time). Never rejects. */
  resolve(host: string): ResolvedAddress | null | Promise<ResolvedAddress | null> {
    const literal = isIP(host)
    if (literal !== 0) return { address: host, family: literal === 6 ? 6 : 4 }
    const cached = this.#cache.get(host)
    if (cached !== undefined && cached.expiresAtMs > this.#now()) return cached.result
    let pending = this.#pending.get(host)
    if (pending === undefined) {
      pending = this.#query(host).finally(() => this.#pending.delete(host))
      this.#pending.set(host, pending)
    }
    return pending
  }

  async #query(host: string): Promise<ResolvedAddress | null> {
    this.lookups++
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<null>((resolve) => (timer = setTimeout(resolve, this.#o.timeoutMs, null)))
    let result: ResolvedAddress | null
    try {
      result = await Promise.race([this.#lookup(host), timeout])
    } catch {
      result = null
    } finally {
      clearTimeout(timer)
    }
    if (result === null) this.failures++
    const ttl = result === null ? (this.#o.failureTtlMs ?? Math.min(this.#o.ttlMs, 5_000)) : this.#o.ttlMs
    this.#cache.set(host, { result, expiresAtMs: this.#now() + ttl })
    return result
  }
}
