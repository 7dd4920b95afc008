import { describe, expect, it } from 'vitest'
import { createProgressBar, NO_PROGRESS, withProgress } from '../../src/cli/progress-bar.js'

function fakeStream(isTTY: boolean): NodeJS.WriteStream & { readonly written: string[] } {
  const written: string[] = []
  return { isTTY, written, write: (chunk: string) => written.push(chunk) > 0 } as unknown as NodeJS.WriteStream & { readonly written: string[] }
}

describe('progress bar', () => {
  it('draws nothing when the stream is not a terminal, so pipes and scripts get clean output', () => {
    const stream = fakeStream(false)
    const bar = createProgressBar('attacks', stream)
    expect(bar).toBe(NO_PROGRESS)
    bar.update(5, 10)
    bar.end()
    expect(stream.written).toEqual([])
  })

  it('redraws one line at most ten times a second, always the last one, and ends it', () => {
    const stream = fakeStream(true)
    const bar = createProgressBar('attacks', stream)
    for (let done = 1; done <= 1_000; done++) bar.update(done, 1_000)
    bar.end()
    // The first update draws, the next ones within 100 ms are skipped, and the final one (done === total) draws.
    expect(stream.written.length).toBeGreaterThanOrEqual(3)
    expect(stream.written.length).toBeLessThan(20)
    expect(stream.written[0]).toMatch(/^\r\[#?\.{29,30}\] 1\/1000 attacks {2}[\d.]+\/s {2}eta \d+s\x1b\[K$/)
    expect(stream.written.at(-2)).toMatch(/^\r\[#{30}\] 1000\/1000 attacks/)
    expect(stream.written.at(-1)).toBe('\n')
  })

  it('counts the items that pass through withProgress', () => {
    const seen: number[] = []
    expect([...withProgress(['a', 'b', 'c'], (n) => seen.push(n))]).toEqual(['a', 'b', 'c'])
    expect(seen).toEqual([1, 2, 3])
  })
})
