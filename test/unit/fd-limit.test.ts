import { existsSync, readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { parseOpenFilesLimit } from '../../src/supervisor/fd-limit.js'

// A /proc/<pid>/limits as Linux writes it (fixed-width columns, trailing spaces kept).
const LIMITS = [
  'Limit                     Soft Limit           Hard Limit           Units     ',
  'Max cpu time              unlimited            unlimited            seconds   ',
  'Max file size             unlimited            unlimited            bytes     ',
  'Max stack size            8388608              unlimited            bytes     ',
  'Max processes             63432                63432                processes ',
  'Max open files            1024                 524288               files     ',
  'Max locked memory         8388608              8388608              bytes     ',
  'Max realtime timeout      unlimited            unlimited            us        ',
  '',
].join('\n')

function withOpenFiles(line: string): string {
  return LIMITS.replace(/^Max open files.*$/m, line)
}

describe('parseOpenFilesLimit', () => {
  it('reads the soft and hard limits of the Max open files line', () => {
    expect(parseOpenFilesLimit(LIMITS)).toEqual({ soft: 1024, hard: 524_288 })
  })

  it('reads the real /proc/self/limits of this process', () => {
    const path = '/proc/self/limits'
    expect(existsSync(path), 'this test needs Linux /proc').toBe(true)
    const text = readFileSync(path, 'utf8')
    const limit = parseOpenFilesLimit(text)
    expect(limit).not.toBeNull()
    // Cross-check against the columns read here independently.
    const columns = text
      .split('\n')
      .find((l) => l.startsWith('Max open files'))!
      .replace('Max open files', '')
      .trim()
      .split(/\s+/)
    const expected = (v: string | undefined): number => (v === 'unlimited' ? Number.POSITIVE_INFINITY : Number.parseInt(v ?? '', 10))
    expect(limit).toEqual({ soft: expected(columns[0]), hard: expected(columns[1]) })
    expect(limit!.soft).toBeGreaterThan(0)
    expect(limit!.soft).toBeLessThanOrEqual(limit!.hard)
  })

  it('"unlimited" reads as Infinity, in either column', () => {
    expect(parseOpenFilesLimit(withOpenFiles('Max open files            unlimited            unlimited            files     '))).toEqual({
      soft: Number.POSITIVE_INFINITY,
      hard: Number.POSITIVE_INFINITY,
    })
    expect(parseOpenFilesLimit(withOpenFiles('Max open files            4096                 unlimited            files     '))).toEqual({
      soft: 4096,
      hard: Number.POSITIVE_INFINITY,
    })
  })

  it('is null when the line is missing', () => {
    expect(parseOpenFilesLimit(LIMITS.replace(/^Max open files.*\n/m, ''))).toBeNull()
    expect(parseOpenFilesLimit('')).toBeNull()
  })

  it('only the line that starts with the label counts', () => {
    expect(parseOpenFilesLimit('  Max open files  10  20  files\n')).toBeNull()
    expect(parseOpenFilesLimit('Limit Max open files 10 20\n')).toBeNull()
  })

  it.each([
    ['words instead of numbers', 'Max open files            many                 more                 files     '],
    ['a number and garbage', 'Max open files            1024                 lots                 files     '],
    ['garbage and a number', 'Max open files            x1024                2048                 files     '],
    ['only the soft limit', 'Max open files            1024'],
    ['no values', 'Max open files'],
    ['no values, trailing spaces', 'Max open files            '],
  ])('is null for garbage values (%s)', (_name, line) => {
    expect(parseOpenFilesLimit(withOpenFiles(line))).toBeNull()
  })

  it('is null for text that is not a limits file at all', () => {
    expect(parseOpenFilesLimit('\u0000\u0001\u0002 binary junk')).toBeNull()
    expect(parseOpenFilesLimit('{"Max open files": 1024}')).toBeNull()
  })

  it('tolerates CRLF line ends', () => {
    expect(parseOpenFilesLimit(LIMITS.replace(/\n/g, '\r\n'))).toEqual({ soft: 1024, hard: 524_288 })
  })
})
