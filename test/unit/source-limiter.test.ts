import { describe, expect, it } from 'vitest'
import { SourceLimiter, type SourceLimiterOptions } from '../../src/supervisor/source-limiter.js'

/** A limiter on a hand-driven clock. */
function limiterAt(options: Partial<SourceLimiterOptions> = {}): { limiter: SourceLimiter; advance: (ms: number) => void } {
  let now = 1_000_000
  const limiter = new SourceLimiter({
    maxConnections: 1_000,
    maxConnectionsPerSource: 1_000,
    newConnectionsPerSecondPerSource: 1_000,
    maxTrackedSources: 1_000,
    now: () => now,
    ...options,
  })
  return { limiter, advance: (ms) => (now += ms) }
}

describe('global cap', () => {
  it('refuses past maxConnections across all sources, and admits again after a release', () => {
    const { limiter } = limiterAt({ maxConnections: 3 })
    expect(limiter.admit('10.0.0.1')).toBeNull()
    expect(limiter.admit('10.0.0.2')).toBeNull()
    expect(limiter.admit('10.0.0.3')).toBeNull()
    expect(limiter.active).toBe(3)
    expect(limiter.admit('10.0.0.4')).toBe('max-connections')
    expect(limiter.admit('10.0.0.1')).toBe('max-connections')
    expect(limiter.refused['max-connections']).toBe(2)
    limiter.release('10.0.0.2')
    expect(limiter.active).toBe(2)
    expect(limiter.admit('10.0.0.4')).toBeNull()
  })
})

describe('per-source cap', () => {
  it('refuses a source past maxConnectionsPerSource while others are still admitted', () => {
    const { limiter } = limiterAt({ maxConnectionsPerSource: 2 })
    expect(limiter.admit('198.18.0.2')).toBeNull()
    expect(limiter.admit('198.18.0.2')).toBeNull()
    expect(limiter.admit('198.18.0.2')).toBe('max-per-source')
    expect(limiter.admit('198.18.0.3')).toBeNull()
    expect(limiter.refused['max-per-source']).toBe(1)
    expect(limiter.active).toBe(3)
    limiter.release('198.18.0.2')
    expect(limiter.admit('198.18.0.2')).toBeNull()
    expect(limiter.admit('198.18.0.2')).toBe('max-per-source')
    expect(limiter.refused['max-per-source']).toBe(2)
  })

  it('a refused attempt does not use up the rate window', () => {
    const { limiter } = limiterAt({ maxConnectionsPerSource: 1, newConnectionsPerSecondPerSource: 2 })
    expect(limiter.admit('a')).toBeNull() // window count 1
    for (let i = 0; i < 5; i++) expect(limiter.admit('a')).toBe('max-per-source')
    limiter.release('a')
    expect(limiter.admit('a')).toBeNull() // window count 2: the refusals did not count
  })
})

describe('per-source rate', () => {
  it('refuses past the rate within one window and admits again when the window resets', () => {
    const { limiter, advance } = limiterAt({ newConnectionsPerSecondPerSource: 3 })
    for (let i = 0; i < 3; i++) {
      expect(limiter.admit('a')).toBeNull()
      limiter.release('a')
    }
    expect(limiter.admit('a')).toBe('rate-per-source')
    expect(limiter.admit('b')).toBeNull() // rates are per source
    advance(999)
    expect(limiter.admit('a')).toBe('rate-per-source')
    advance(1)
    expect(limiter.admit('a')).toBeNull()
    expect(limiter.refused['rate-per-source']).toBe(2)
  })

  it('the window is fixed: it starts at the first attempt, not at the last one', () => {
    const { limiter, advance } = limiterAt({ newConnectionsPerSecondPerSource: 2 })
    expect(limiter.admit('a')).toBeNull()
    advance(600)
    expect(limiter.admit('a')).toBeNull()
    advance(300)
    expect(limiter.admit('a')).toBe('rate-per-source')
    advance(100) // 1000 ms after the first attempt
    expect(limiter.admit('a')).toBeNull()
    expect(limiter.admit('a')).toBeNull()
    expect(limiter.admit('a')).toBe('rate-per-source')
  })

  it('counts new connections, not concurrent ones: releases do not give rate back', () => {
    const { limiter } = limiterAt({ newConnectionsPerSecondPerSource: 2 })
    limiter.admit('a')
    limiter.release('a')
    limiter.admit('a')
    limiter.release('a')
    expect(limiter.active).toBe(0)
    expect(limiter.admit('a')).toBe('rate-per-source')
  })
})

describe('release', () => {
  it('an unknown source or an extra release changes nothing', () => {
    const { limiter } = limiterAt({ maxConnections: 1 })
    limiter.release('never-seen')
    expect(limiter.active).toBe(0)
    expect(limiter.admit('a')).toBeNull()
    limiter.release('a')
    limiter.release('a')
    limiter.release('a')
    expect(limiter.active).toBe(0)
    expect(limiter.admit('b')).toBeNull()
    expect(limiter.admit('c')).toBe('max-connections')
  })

  it('active counts each admitted connection until its release', () => {
    const { limiter } = limiterAt()
    for (let i = 0; i < 10; i++) limiter.admit(`s${i % 3}`)
    expect(limiter.active).toBe(10)
    for (let i = 0; i < 10; i++) limiter.release(`s${i % 3}`)
    expect(limiter.active).toBe(0)
  })
})

describe('tracked sources are bounded', () => {
  it('never tracks more than maxTrackedSources, however many sources come', () => {
    const { limiter, advance } = limiterAt({ maxTrackedSources: 50, maxConnections: 1_000_000 })
    for (let i = 0; i < 5_000; i++) {
      const source = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`
      if (limiter.admit(source) === null) limiter.release(source)
      expect(limiter.trackedSources).toBeLessThanOrEqual(50)
      advance(7)
    }
    expect(limiter.trackedSources).toBeLessThanOrEqual(50)
  })

  it('busy sources are kept and new ones refused with max-sources', () => {
    const { limiter, advance } = limiterAt({ maxTrackedSources: 3 })
    for (const s of ['a', 'b', 'c']) expect(limiter.admit(s)).toBeNull()
    advance(5_000) // old windows, but every source still has a connection open
    expect(limiter.admit('d')).toBe('max-sources')
    expect(limiter.trackedSources).toBe(3)
    expect(limiter.refused['max-sources']).toBe(1)
    // A tracked source is not a new source: it is still admitted.
    expect(limiter.admit('a')).toBeNull()
  })

  it('idle sources with an old window are pruned to make room', () => {
    const { limiter, advance } = limiterAt({ maxTrackedSources: 3 })
    for (const s of ['a', 'b', 'c']) expect(limiter.admit(s)).toBeNull()
    limiter.release('a')
    limiter.release('b')
    advance(1_000)
    expect(limiter.admit('d')).toBeNull()
    expect(limiter.trackedSources).toBe(2) // c (busy) and d
    expect(limiter.refused['max-sources']).toBe(0)
  })

  it('an idle source whose window is still open is not pruned', () => {
    const { limiter, advance } = limiterAt({ maxTrackedSources: 2 })
    expect(limiter.admit('a')).toBeNull()
    expect(limiter.admit('b')).toBeNull()
    limiter.release('a')
    limiter.release('b')
    advance(500)
    // Forgetting them now would reset their rate windows: a flood could dodge the rate limit by rotating sources.
    expect(limiter.admit('c')).toBe('max-sources')
    expect(limiter.trackedSources).toBe(2)
  })

  it('a forgotten source starts over with a fresh window', () => {
    const { limiter, advance } = limiterAt({ maxTrackedSources: 1, newConnectionsPerSecondPerSource: 1 })
    expect(limiter.admit('a')).toBeNull()
    limiter.release('a')
    advance(1_000)
    expect(limiter.admit('b')).toBeNull() // a is pruned
    limiter.release('b')
    advance(1_000)
    expect(limiter.admit('a')).toBeNull()
    expect(limiter.trackedSources).toBe(1)
  })

  it('a failed prune is not repeated on every attempt within 100 ms', () => {
    const { limiter, advance } = limiterAt({ maxTrackedSources: 2 })
    expect(limiter.admit('a')).toBeNull()
    expect(limiter.admit('b')).toBeNull()
    limiter.release('a')
    advance(999)
    expect(limiter.admit('c')).toBe('max-sources') // prune finds nothing: a's window is 999 ms old
    advance(50) // a is prunable now, but the last scan was 50 ms ago
    expect(limiter.admit('c')).toBe('max-sources')
    advance(50)
    expect(limiter.admit('c')).toBeNull()
    expect(limiter.refused['max-sources']).toBe(2)
  })
})

describe('refused counters', () => {
  it('count each reason separately and start at zero', () => {
    const { limiter } = limiterAt({ maxConnections: 4, maxConnectionsPerSource: 2, newConnectionsPerSecondPerSource: 3, maxTrackedSources: 2 })
    expect(limiter.refused).toEqual({ 'max-connections': 0, 'max-per-source': 0, 'rate-per-source': 0, 'max-sources': 0 })
    limiter.admit('a')
    limiter.admit('a')
    limiter.admit('a') // max-per-source
    limiter.release('a')
    limiter.admit('a') // third in the window
    limiter.admit('a') // rate-per-source (checked before the per-source cap)
    limiter.admit('b')
    limiter.admit('c') // max-sources
    limiter.admit('b') // 4 active: a, a, b, b
    limiter.admit('b') // max-connections
    expect(limiter.refused).toEqual({ 'max-connections': 1, 'max-per-source': 1, 'rate-per-source': 1, 'max-sources': 1 })
    expect(limiter.active).toBe(4)
  })
})

describe('default clock', () => {
  it('uses Date.now when no clock is given', () => {
    const limiter = new SourceLimiter({ maxConnections: 10, maxConnectionsPerSource: 10, newConnectionsPerSecondPerSource: 1, maxTrackedSources: 10 })
    expect(limiter.admit('a')).toBeNull()
    expect(limiter.admit('a')).toBe('rate-per-source')
  })
})
