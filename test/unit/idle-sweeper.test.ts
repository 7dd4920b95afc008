import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { IdleSweeper } from '../../src/responders/idle-sweeper.js'

class Member {
  idleTick = 0
  expiredAt: number | null = null
  idleExpired(): void {
    this.expiredAt = Date.now()
  }
}

describe('IdleSweeper', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 0 })
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  it('expires a member no earlier than the timeout and at most one interval later (a tenth, 50 ms to 1 s)', () => {
    for (const [timeoutMs, intervalMs] of [[200, 50], [1_500, 150], [30_000, 1_000]] as const) {
      const sweeper = new IdleSweeper<Member>(timeoutMs)
      vi.advanceTimersByTime(7) // members join between sweeps, not on one
      const member = new Member()
      const joined = Date.now()
      sweeper.add(member)
      vi.advanceTimersByTime(timeoutMs - 1)
      expect(member.expiredAt, `${timeoutMs}`).toBeNull()
      vi.advanceTimersByTime(intervalMs + 1)
      expect(member.expiredAt, `${timeoutMs}`).not.toBeNull()
      expect(member.expiredAt! - joined).toBeGreaterThanOrEqual(timeoutMs)
      expect(member.expiredAt! - joined).toBeLessThanOrEqual(timeoutMs + intervalMs)
      expect(sweeper.size).toBe(0)
    }
  })

  it('starts the idle time again on touch, and forgets a deleted member', () => {
    const sweeper = new IdleSweeper<Member>(200)
    const touched = new Member()
    const deleted = new Member()
    sweeper.add(touched)
    sweeper.add(deleted)
    vi.advanceTimersByTime(150)
    sweeper.touch(touched)
    sweeper.delete(deleted)
    vi.advanceTimersByTime(150) // 300 ms after joining, 150 after the touch
    expect(touched.expiredAt).toBeNull()
    vi.advanceTimersByTime(150)
    expect(touched.expiredAt).not.toBeNull()
    expect(deleted.expiredAt).toBeNull()
  })

  it('runs its timer only while it has members', () => {
    const sweeper = new IdleSweeper<Member>(1_000)
    expect(vi.getTimerCount()).toBe(0)
    const members = Array.from({ length: 3 }, () => new Member())
    for (const m of members) sweeper.add(m)
    expect(vi.getTimerCount()).toBe(1)
    sweeper.delete(members[0]!)
    expect(vi.getTimerCount()).toBe(1)
    vi.advanceTimersByTime(1_200) // the other two expire
    expect(members.slice(1).every((m) => m.expiredAt !== null)).toBe(true)
    expect(vi.getTimerCount()).toBe(0)
  })
})
