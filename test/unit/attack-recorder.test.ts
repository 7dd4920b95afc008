import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { AttackRecorder, type AttackRecorderOptions } from '../../src/attack/attack-recorder.js'
import { ulidTimeMs } from '../../src/core/ids.js'

const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/

function recorder(options: Partial<AttackRecorderOptions> = {}): AttackRecorder {
  return new AttackRecorder({
    protocol: 'tcp',
    family: 4,
    mode: 'normal',
    source: { address: '198.18.0.2', port: 40_000 },
    target: { address: '198.18.0.1', port: 80 },
    maxAttackBytes: 1_000,
    maxTranscriptChunks: 10_000,
    ...options,
  })
}

/** Splits `data` at the given sizes (cycled); zero sizes make empty chunks. */
function chunked(data: Buffer, sizes: readonly number[]): Buffer[] {
  const chunks: Buffer[] = []
  let offset = 0
  let i = 0
  while (offset < data.length) {
    const size = sizes[i++ % sizes.length]!
    chunks.push(data.subarray(offset, offset + size))
    offset += size
    if (i > data.length * 4 + 16) throw new Error('sizes make no progress')
  }
  return chunks
}

describe('read limit', () => {
  it('holds exactly for any chunking (property)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 4_000 }),
        fc.array(fc.integer({ min: 0, max: 1_500 }), { minLength: 1, maxLength: 20 }).filter((sizes) => sizes.some((s) => s > 0)),
        fc.integer({ min: 1, max: 3_000 }),
        (bytes, sizes, limit) => {
          const data = Buffer.from(bytes)
          const rec = recorder({ maxAttackBytes: limit })
          let signalled = false
          let kept = 0
          for (const chunk of chunked(data, sizes)) {
            const dropped = rec.received(chunk)
            kept = Math.min(limit, kept + chunk.length)
            // received() says "dropped" from the first chunk that passes the limit on, never before.
            if (signalled) expect(dropped).toBe(true)
            signalled ||= dropped
          }
          const attack = rec.finish('peer-closed')
          expect(attack.payload.equals(data.subarray(0, limit))).toBe(true)
          expect(attack.payload.length).toBe(Math.min(limit, data.length))
          expect(attack.truncated).toBe(data.length > limit)
          expect(signalled).toBe(data.length > limit)
          expect(attack.bytesReceived).toBe(data.length)
          expect(rec.bytesReceived).toBe(data.length)
          expect(kept).toBe(attack.payload.length)
        },
      ),
      { numRuns: 300 },
    )
  })

  it('exactly at the limit is not truncated; one byte more is', () => {
    const exact = recorder({ maxAttackBytes: 10 })
    expect(exact.received(Buffer.alloc(6, 1))).toBe(false)
    expect(exact.received(Buffer.alloc(4, 2))).toBe(false)
    expect(exact.received(Buffer.alloc(0))).toBe(false)
    const a = exact.finish('peer-closed')
    expect(a.truncated).toBe(false)
    expect(a.payload).toEqual(Buffer.concat([Buffer.alloc(6, 1), Buffer.alloc(4, 2)]))

    const over = recorder({ maxAttackBytes: 10 })
    over.received(Buffer.alloc(10, 1))
    expect(over.received(Buffer.from([9]))).toBe(true)
    const b = over.finish('size-limit')
    expect(b.truncated).toBe(true)
    expect(b.payload).toEqual(Buffer.alloc(10, 1))
    expect(b.bytesReceived).toBe(11)
  })

  it('a single chunk far above the limit keeps only its head, as a copy', () => {
    const big = Buffer.alloc(1_000_000, 7)
    const rec = recorder({ maxAttackBytes: 100 })
    expect(rec.received(big)).toBe(true)
    const attack = rec.finish('size-limit')
    expect(attack.payload.length).toBe(100)
    // A copy, not a view that would pin the megabyte.
    expect(attack.payload.buffer).not.toBe(big.buffer)
    big.fill(0)
    expect(attack.payload).toEqual(Buffer.alloc(100, 7))
  })

  it('a limit of one byte keeps exactly one byte', () => {
    const rec = recorder({ maxAttackBytes: 1 })
    rec.received(Buffer.from('ab'))
    rec.received(Buffer.from('cd'))
    const attack = rec.finish('size-limit')
    expect(attack.payload.toString()).toBe('a')
    expect(attack.bytesReceived).toBe(4)
    expect(attack.truncated).toBe(true)
  })
})

describe('sessions', () => {
  it('a zero-byte session has an empty payload and zero counters', () => {
    const rec = recorder()
    const attack = rec.finish('idle-timeout')
    expect(Buffer.isBuffer(attack.payload)).toBe(true)
    expect(attack.payload.length).toBe(0)
    expect(attack.truncated).toBe(false)
    expect(attack.bytesReceived).toBe(0)
    expect(attack.bytesSent).toBe(0)
    expect(attack.closeReason).toBe('idle-timeout')
  })

  it('only empty chunks still make a zero-byte session', () => {
    const rec = recorder()
    for (let i = 0; i < 5; i++) expect(rec.received(Buffer.alloc(0))).toBe(false)
    const attack = rec.finish('peer-closed')
    expect(attack.payload.length).toBe(0)
    expect(attack.bytesReceived).toBe(0)
  })

  it('counts and keeps bytes sent, as the response', () => {
    const rec = recorder()
    rec.sent(Buffer.alloc(10, 1))
    rec.sent(Buffer.alloc(0))
    rec.sent(Buffer.alloc(5, 2))
    expect(rec.bytesSent).toBe(15)
    const attack = rec.finish('peer-closed')
    expect(attack.bytesSent).toBe(15)
    expect(attack.response).toEqual(Buffer.concat([Buffer.alloc(10, 1), Buffer.alloc(5, 2)]))
    expect(attack.responseTruncated).toBe(false)
  })

  it('caps the response at the read limit too, and says so', () => {
    const rec = recorder({ maxAttackBytes: 8 })
    rec.sent(Buffer.alloc(6, 1))
    rec.sent(Buffer.alloc(6, 2))
    rec.received(Buffer.from('abc'))
    const attack = rec.finish('peer-closed')
    expect(attack.bytesSent).toBe(12)
    expect(attack.response).toEqual(Buffer.concat([Buffer.alloc(6, 1), Buffer.alloc(2, 2)]))
    expect(attack.responseTruncated).toBe(true)
    expect(attack.truncated).toBe(false)
    // The transcript lists only kept bytes: its out chunks add up to the response.
    const out = attack.transcript.filter((c) => c.direction === 'out').reduce((n, c) => n + c.size, 0)
    expect(out).toBe(8)
  })

  it('the attack carries the options and the times', () => {
    const rec = recorder({
      protocol: 'udp',
      family: 6,
      mode: 'ignore',
      source: { address: 'fd00::2', port: 5353 },
      target: { address: 'fd00::1', port: 53 },
      startedAtMs: 1_700_000_000_000,
    })
    rec.received(Buffer.from('hi'))
    const attack = rec.finish('shutdown', 1_700_000_000_250)
    expect(attack).toEqual({
      id: rec.id,
      protocol: 'udp',
      family: 6,
      mode: 'ignore',
      source: { address: 'fd00::2', port: 5353 },
      target: { address: 'fd00::1', port: 53 },
      startedAtMs: 1_700_000_000_000,
      endedAtMs: 1_700_000_000_250,
      closeReason: 'shutdown',
      payload: Buffer.from('hi'),
      truncated: false,
      bytesReceived: 2,
      bytesSent: 0,
      response: Buffer.alloc(0),
      responseTruncated: false,
      transcript: [{ direction: 'in', offsetMs: expect.any(Number), size: 2 }],
      transcriptTruncated: false,
      relay: null,
      synFacts: null,
    })
  })

  it('an end before the start (clock step back) is clamped to the start', () => {
    const rec = recorder({ startedAtMs: 5_000_000 })
    expect(rec.finish('peer-closed', 4_000_000).endedAtMs).toBe(5_000_000)
  })
})

describe('finish', () => {
  it('is idempotent: a second call returns the same object with the first reason', () => {
    const rec = recorder()
    rec.received(Buffer.from('GET / HTTP/1.0\r\n\r\n'))
    expect(rec.finished).toBe(false)
    const first = rec.finish('peer-closed', Date.now())
    expect(rec.finished).toBe(true)
    const second = rec.finish('peer-reset', Date.now() + 10_000)
    expect(second).toBe(first)
    expect(second.closeReason).toBe('peer-closed')
    expect(second.payload.toString()).toBe('GET / HTTP/1.0\r\n\r\n')
  })

  it('bytes arriving after finish do not change the finished attack', () => {
    const rec = recorder()
    rec.received(Buffer.from('one'))
    const attack = rec.finish('peer-closed')
    rec.received(Buffer.from('two'))
    rec.sent(Buffer.alloc(99))
    expect(rec.finish('shutdown')).toBe(attack)
    expect(attack.payload.toString()).toBe('one')
    expect(attack.bytesReceived).toBe(3)
    expect(attack.bytesSent).toBe(0)
  })
})

describe('ids', () => {
  it('are ULIDs whose time is the start time', () => {
    const startedAtMs = Date.now() + 60_000
    const rec = recorder({ startedAtMs })
    expect(rec.id).toMatch(ULID)
    expect(ulidTimeMs(rec.id)).toBe(startedAtMs)
    expect(rec.finish('peer-closed').id).toBe(rec.id)
  })

  it('sort by start time, also within one millisecond', () => {
    const base = Date.now() + 120_000
    const recorders: AttackRecorder[] = []
    for (let i = 0; i < 200; i++) recorders.push(recorder({ startedAtMs: base + Math.floor(i / 10) }))
    const ids = recorders.map((r) => r.id)
    expect(new Set(ids).size).toBe(ids.length)
    expect([...ids].sort()).toEqual(ids)
  })

  it('use the current time when no start is given', () => {
    const before = Date.now()
    const rec = recorder()
    const after = Date.now()
    expect(rec.startedAtMs).toBeGreaterThanOrEqual(before)
    expect(rec.startedAtMs).toBeLessThanOrEqual(after)
  })
})

describe('transcript', () => {
  it('lists the exchange in order, each chunk slicing payload (in) or response (out)', async () => {
    const rec = recorder()
    rec.received(Buffer.from('USER root\r\n'))
    await new Promise((r) => setTimeout(r, 5))
    rec.sent(Buffer.from('331 password\r\n'))
    await new Promise((r) => setTimeout(r, 5))
    rec.received(Buffer.from('PASS x\r\n'))
    const attack = rec.finish('peer-closed')
    expect(attack.transcript.map((c) => [c.direction, c.size])).toEqual([
      ['in', 11],
      ['out', 14],
      ['in', 8],
    ])
    const offsets = attack.transcript.map((c) => c.offsetMs)
    expect(offsets[1]!).toBeGreaterThanOrEqual(offsets[0]! + 4)
    expect(offsets[2]!).toBeGreaterThanOrEqual(offsets[1]! + 4)
    // Replaying the transcript from the two buffers gives back the exchange.
    let inAt = 0
    let outAt = 0
    const replay = attack.transcript.map((c) => {
      const from = c.direction === 'in' ? attack.payload : attack.response
      const at = c.direction === 'in' ? inAt : outAt
      if (c.direction === 'in') inAt += c.size
      else outAt += c.size
      return from.subarray(at, at + c.size).toString()
    })
    expect(replay).toEqual(['USER root\r\n', '331 password\r\n', 'PASS x\r\n'])
    expect(attack.transcriptTruncated).toBe(false)
  })

  it('merges chunks of one direction within one millisecond, and never lists empty chunks', () => {
    let now = 1_000
    const rec = recorder({ startedAtMs: 1_000 })
    const realNow = Date.now
    Date.now = () => now
    try {
      rec.received(Buffer.from('a'))
      rec.received(Buffer.from('b'))
      rec.received(Buffer.alloc(0))
      now = 1_002
      rec.received(Buffer.from('c'))
      rec.sent(Buffer.from('x'))
      rec.sent(Buffer.from('y'))
    } finally {
      Date.now = realNow
    }
    expect(rec.finish('peer-closed').transcript).toEqual([
      { direction: 'in', offsetMs: 0, size: 2 },
      { direction: 'in', offsetMs: 2, size: 1 },
      { direction: 'out', offsetMs: 2, size: 2 },
    ])
  })

  it('stops listing at maxTranscriptChunks and flags it; the bytes are still kept', () => {
    const rec = recorder({ maxTranscriptChunks: 3 })
    for (let i = 0; i < 10; i++) {
      rec.received(Buffer.from('q'))
      rec.sent(Buffer.from('r'))
    }
    const attack = rec.finish('peer-closed')
    expect(attack.transcript.length).toBe(3)
    expect(attack.transcriptTruncated).toBe(true)
    expect(attack.payload.length).toBe(10)
    expect(attack.response.length).toBe(10)
  })

  it('stops listing a direction at its read limit: the listed chunks always slice what was kept', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 40 })), { maxLength: 60 }), fc.integer({ min: 1, max: 200 }), (chunks, limit) => {
        const rec = recorder({ maxAttackBytes: limit })
        for (const [incoming, size] of chunks) {
          if (incoming) rec.received(Buffer.alloc(size, 1))
          else rec.sent(Buffer.alloc(size, 2))
        }
        const a = rec.finish('peer-closed')
        const sum = (d: string): number => a.transcript.filter((c) => c.direction === d).reduce((n, c) => n + c.size, 0)
        expect(sum('in')).toBe(a.payload.length)
        expect(sum('out')).toBe(a.response.length)
        expect(a.transcript.every((c) => c.size > 0)).toBe(true)
      }),
    )
  })

  it('records the relay outcome, the last one set winning', () => {
    const rec = recorder({ mode: 'mirror' })
    expect(recorder().finish('peer-closed').relay).toBeNull()
    rec.setRelay({ target: '198.18.0.2:80', outcome: 'fallback', reason: 'loop' })
    expect(rec.finish('peer-closed').relay).toEqual({ target: '198.18.0.2:80', outcome: 'fallback', reason: 'loop' })
  })
})
