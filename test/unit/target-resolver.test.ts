import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { TargetResolver, type ResolvedAddress, type TargetResolverOptions } from '../../src/responders/target-resolver.js'

interface Deferred {
  readonly promise: Promise<ResolvedAddress>
  resolve(value: ResolvedAddress): void
  reject(err: Error): void
}

function deferred(): Deferred {
  let resolve!: (value: ResolvedAddress) => void
  let reject!: (err: Error) => void
  const promise = new Promise<ResolvedAddress>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

type Lookup = (host: string) => Promise<ResolvedAddress>

/** A resolver on a hand-driven clock whose lookups are recorded, answered by `answer`. */
function resolverWith(answer: Lookup, options: Partial<TargetResolverOptions> = {}): { resolver: TargetResolver; calls: string[]; advance: (ms: number) => void } {
  let now = 5_000_000
  const calls: string[] = []
  const resolver = new TargetResolver({
    ttlMs: 60_000,
    timeoutMs: 10_000,
    lookup: (host) => {
      calls.push(host)
      return answer(host)
    },
    now: () => now,
    ...options,
  })
  return { resolver, calls, advance: (ms) => (now += ms) }
}

const BACKEND: ResolvedAddress = { address: '192.0.2.80', family: 4 }
const BACKEND_V6: ResolvedAddress = { address: '2001:db8::80', family: 6 }

describe('TargetResolver: IP literals', () => {
  it.each<[string, 4 | 6]>([
    ['192.0.2.80', 4],
    ['10.0.0.1', 4],
    ['2001:db8::80', 6],
    ['::1', 6],
    ['::ffff:192.0.2.80', 6],
  ])('returns %s as family %i synchronously without a lookup', (host, family) => {
    const { resolver, calls } = resolverWith(() => Promise.reject(new Error('must not be called')))
    const result = resolver.resolve(host)
    expect(result).not.toBeInstanceOf(Promise)
    expect(result).toEqual({ address: host, family })
    expect(calls).toEqual([])
    expect(resolver.lookups).toBe(0)
  })
})

describe('TargetResolver: cache', () => {
  it('looks a name up once, serves it from the cache for ttlMs, then looks it up again', async () => {
    const { resolver, calls, advance } = resolverWith(() => Promise.resolve(BACKEND), { ttlMs: 30_000 })
    const first = resolver.resolve('backend.example')
    expect(first).toBeInstanceOf(Promise)
    expect(await first).toEqual(BACKEND)
    advance(29_999)
    const cached = resolver.resolve('backend.example')
    expect(cached).not.toBeInstanceOf(Promise)
    expect(cached).toEqual(BACKEND)
    expect(calls).toEqual(['backend.example'])
    advance(1)
    expect(await resolver.resolve('backend.example')).toEqual(BACKEND)
    expect(calls).toEqual(['backend.example', 'backend.example'])
    expect(resolver.lookups).toBe(2)
    expect(resolver.failures).toBe(0)
  })

  it('caches each name separately', async () => {
    const { resolver, calls } = resolverWith((host) => Promise.resolve(host === 'v6.example' ? BACKEND_V6 : BACKEND))
    expect(await resolver.resolve('v4.example')).toEqual(BACKEND)
    expect(await resolver.resolve('v6.example')).toEqual(BACKEND_V6)
    expect(resolver.resolve('v4.example')).toEqual(BACKEND)
    expect(resolver.resolve('v6.example')).toEqual(BACKEND_V6)
    expect(calls).toEqual(['v4.example', 'v6.example'])
  })

  it('shares one lookup between concurrent resolve() calls for a name', async () => {
    const pending = deferred()
    const { resolver, calls } = resolverWith(() => pending.promise)
    const results = Array.from({ length: 5 }, () => resolver.resolve('backend.example'))
    expect(calls).toEqual(['backend.example'])
    pending.resolve(BACKEND)
    expect(await Promise.all(results)).toEqual(Array.from({ length: 5 }, () => BACKEND))
    expect(resolver.lookups).toBe(1)
  })

  it('shares one failed lookup between concurrent calls too', async () => {
    const pending = deferred()
    const { resolver, calls } = resolverWith(() => pending.promise)
    const results = [resolver.resolve('dead.example'), resolver.resolve('dead.example'), resolver.resolve('dead.example')]
    pending.reject(new Error('ENOTFOUND'))
    expect(await Promise.all(results)).toEqual([null, null, null])
    expect(calls).toHaveLength(1)
    expect(resolver.failures).toBe(1)
  })
})

describe('TargetResolver: failures', () => {
  it('returns null for a rejecting lookup and caches the failure for min(ttl, 5 s) by default', async () => {
    let fail = true
    const { resolver, calls, advance } = resolverWith(() => (fail ? Promise.reject(new Error('ENOTFOUND')) : Promise.resolve(BACKEND)), { ttlMs: 60_000 })
    expect(await resolver.resolve('backend.example')).toBeNull()
    fail = false
    advance(4_999)
    expect(resolver.resolve('backend.example')).toBeNull() // cached failure, synchronously
    expect(calls).toHaveLength(1)
    advance(1)
    expect(await resolver.resolve('backend.example')).toEqual(BACKEND)
    expect(calls).toHaveLength(2)
    expect(resolver.lookups).toBe(2)
    expect(resolver.failures).toBe(1)
  })

  it('caches a failure for ttlMs when that is shorter than 5 s', async () => {
    const { resolver, calls, advance } = resolverWith(() => Promise.reject(new Error('ENOTFOUND')), { ttlMs: 2_000 })
    expect(await resolver.resolve('backend.example')).toBeNull()
    advance(1_999)
    expect(resolver.resolve('backend.example')).toBeNull()
    expect(calls).toHaveLength(1)
    advance(1)
    expect(await resolver.resolve('backend.example')).toBeNull()
    expect(calls).toHaveLength(2)
    expect(resolver.failures).toBe(2)
  })

  it('caches a failure for failureTtlMs when given', async () => {
    const { resolver, calls, advance } = resolverWith(() => Promise.reject(new Error('ENOTFOUND')), { ttlMs: 60_000, failureTtlMs: 100 })
    expect(await resolver.resolve('backend.example')).toBeNull()
    advance(99)
    expect(resolver.resolve('backend.example')).toBeNull()
    expect(calls).toHaveLength(1)
    advance(1)
    expect(await resolver.resolve('backend.example')).toBeNull()
    expect(calls).toHaveLength(2)
  })

  it('returns null, never rejects, when the lookup throws synchronously', async () => {
    const { resolver } = resolverWith(() => {
      throw new Error('synchronous failure')
    })
    await expect(Promise.resolve(resolver.resolve('backend.example'))).resolves.toBeNull()
    expect(resolver.lookups).toBe(1)
    expect(resolver.failures).toBe(1)
  })

  it('returns null after timeoutMs for a lookup that never settles, and caches that as a failure', async () => {
    const { resolver, calls } = resolverWith(() => new Promise<ResolvedAddress>(() => {}), { timeoutMs: 50 })
    const started = performance.now()
    await expect(Promise.resolve(resolver.resolve('slow.example'))).resolves.toBeNull()
    const elapsedMs = performance.now() - started
    expect(elapsedMs).toBeGreaterThanOrEqual(45)
    expect(elapsedMs).toBeLessThan(2_000)
    expect(resolver.resolve('slow.example')).toBeNull()
    expect(calls).toHaveLength(1)
    expect(resolver.lookups).toBe(1)
    expect(resolver.failures).toBe(1)
  })

  it('ignores a lookup that settles after the timeout, with no unhandled rejection', async () => {
    const late = deferred()
    const { resolver } = resolverWith(() => late.promise, { timeoutMs: 20 })
    expect(await resolver.resolve('late.example')).toBeNull()
    late.reject(new Error('ETIMEOUT, too late'))
    await sleep(20)
    expect(resolver.resolve('late.example')).toBeNull()
    expect(resolver.failures).toBe(1)
  })

  it('takes a lookup that answers before the timeout', async () => {
    const { resolver } = resolverWith(async () => {
      await sleep(5)
      return BACKEND
    }, { timeoutMs: 1_000 })
    expect(await resolver.resolve('backend.example')).toEqual(BACKEND)
    expect(resolver.failures).toBe(0)
  })
})
