import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { MIN_RUN, printableRuns, printableText } from '../../src/store/printable-text.js'

const bytes = (...parts: (string | number[] | Buffer)[]): Buffer => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))))

describe('printableText', () => {
  it('keeps runs of printable ASCII, in order, and drops the short ones binary data is full of', () => {
    expect(printableText(bytes('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))).toBe('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
    expect(printableText(bytes([0xff, 0x53, 0x4d, 0x42, 0x72, 0x00, 0x01], 'ab', [0x00], 'wget http://h/x', [0x90, 0x90]))).toBe('SMBr\nwget http://h/x')
    expect(printableText(bytes('abc', [0x00], 'abcd'))).toBe('abcd') // 3 < MIN_RUN
    expect(printableText(Buffer.alloc(0))).toBe('')
    expect(printableText(Buffer.alloc(100, 0x41).fill(0x80, 50, 51))).toBe(`${'A'.repeat(50)}\n${'A'.repeat(49)}`)
  })

  it('also reads UTF-16LE text, at either alignment, as Windows payloads carry it', () => {
    const wide = Buffer.from('powershell -enc', 'utf16le')
    expect(printableText(bytes([0x00, 0x01], wide, [0x01, 0x02]))).toBe('powershell -enc')
    expect(printableText(bytes([0x01], wide, [0x02]))).toBe('powershell -enc') // odd offset
    // A NUL after a printable byte alone does not make text.
    expect(printableText(bytes('ab', [0x00], 'cd', [0x00]))).toBe('')
  })

  it('stops at the character budget whatever the payload', () => {
    const big = Buffer.alloc(1 << 20, 0x61)
    expect(printableText(big, 1_000)).toHaveLength(1_000)
    const wide = Buffer.from('x'.repeat(10_000), 'utf16le')
    expect(printableText(wide, 100).length).toBeLessThanOrEqual(100 + 1)
  })

  it('never throws, and gives runs of printable characters found in the payload, within the budget, for any bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2_048 }), fc.integer({ min: 0, max: 4_096 }), (payload, budget) => {
        const runs = printableRuns(payload, budget)
        const latin1 = Buffer.from(payload).toString('latin1')
        let chars = 0
        runs.forEach((run, i) => {
          expect(/^[\t\n\r\x20-\x7e]+$/.test(run)).toBe(true)
          // Only the last run may have been cut short by the budget.
          if (i < runs.length - 1) expect(run.length).toBeGreaterThanOrEqual(MIN_RUN)
          const wide = Buffer.from(run, 'utf16le').toString('latin1')
          expect(latin1.includes(run) || latin1.includes(wide)).toBe(true)
          chars += run.length
        })
        expect(chars).toBeLessThanOrEqual(budget)
        expect(printableText(payload, budget)).toBe(runs.join('\n'))
      }),
      { numRuns: 1_000 },
    )
  })
})
