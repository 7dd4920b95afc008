import { readFileSync } from 'node:fs'

import { describe, expect, it } from 'vitest'

import { parseCpuMs, parseStatusKiB } from '../../src/bench/proc-usage.js'

describe('the benchmark\'s /proc readings', () => {
  const status = ['Name:\tnode', 'VmPeak:\t 1222776 kB', 'VmRSS:\t   59884 kB', 'RssAnon:\t   13728 kB', 'RssFile:\t   46124 kB', 'Threads:\t11', ''].join('\n')

  it('reads VmRSS and RssAnon, not the lines around them', () => {
    expect(parseStatusKiB(status, 'VmRSS')).toBe(59_884)
    expect(parseStatusKiB(status, 'RssAnon')).toBe(13_728)
  })

  it('gives NaN for a status without the line (a zombie) or with a damaged one', () => {
    expect(parseStatusKiB('Name:\tnode\nState:\tZ (zombie)\n', 'VmRSS')).toBeNaN()
    expect(parseStatusKiB('VmRSS:\t   abc kB\nRssAnon:\t12 MB\n', 'VmRSS')).toBeNaN()
    expect(parseStatusKiB('VmRSS:\t   abc kB\nRssAnon:\t12 MB\n', 'RssAnon')).toBeNaN()
  })

  it("reads this process's own status, where the anonymous part is smaller than the whole", () => {
    const own = readFileSync('/proc/self/status', 'utf8')
    const rss = parseStatusKiB(own, 'VmRSS')
    const anon = parseStatusKiB(own, 'RssAnon')
    expect(anon).toBeGreaterThan(0)
    expect(anon).toBeLessThan(rss)
  })

  it('counts CPU from after the command name, which may hold spaces and parentheses', () => {
    // pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime ...
    const stat = '4242 (a (b) c) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 11 0'
    expect(parseCpuMs(stat)).toBe(3_000)
  })
})
