import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { describe, expect, it, onTestFinished } from 'vitest'

import { findQueue, parseNfnetlinkQueue, type QueueTable } from '../../src/rules/nfqueue-status.js'
import { readProcText } from '../../src/rules/rules-exec.js'

// Format of the kernel's seq_show: "%5u %6u %5u %1u %5u %5u %5u %8u %2d". The first line was read from a namespace
// with `new NFQueue().open(7, 65535)` running; the others are made up to cover the counters.
const FIXTURE = [
  '    7   4910     0 2 65531     0     0        0  1',
  '    0 2147483   12 2 65535    34     5   123456  1',
  '65535      1     0 1     0     0     0 4294967295  1',
].join('\n')

describe('parseNfnetlinkQueue', () => {
  it('reads every field of every line', () => {
    expect(parseNfnetlinkQueue(FIXTURE)).toEqual([
      { queue: 7, portId: 4910, queueTotal: 0, copyMode: 2, copyRange: 65531, dropped: 0, userDropped: 0, idSequence: 0 },
      { queue: 0, portId: 2147483, queueTotal: 12, copyMode: 2, copyRange: 65535, dropped: 34, userDropped: 5, idSequence: 123456 },
      { queue: 65535, portId: 1, queueTotal: 0, copyMode: 1, copyRange: 0, dropped: 0, userDropped: 0, idSequence: 4294967295 },
    ])
  })

  it('reads counters old kernels printed with %d (negative past 2^31) as unsigned', () => {
    const [q] = parseNfnetlinkQueue('    3  -2147483648     0 2 65531     0     0       -1  1')
    expect(q?.portId).toBe(2_147_483_648)
    expect(q?.idSequence).toBe(4_294_967_295)
  })

  it('returns nothing for the empty file (module loaded, nothing bound)', () => {
    expect(parseNfnetlinkQueue('')).toEqual([])
    expect(parseNfnetlinkQueue('\n')).toEqual([])
  })

  it('skips lines that are short or not numbers instead of failing', () => {
    const text = ['garbage', '1 2 3', '    5  100 0 2 x 0 0 0 1', '    9    42     1 2 65531     0     0        7  1'].join('\n')
    expect(parseNfnetlinkQueue(text).map((q) => q.queue)).toEqual([9])
  })

  it('rejects values outside 32 bits', () => {
    expect(parseNfnetlinkQueue('    1 99999999999 0 2 65531 0 0 0 1')).toEqual([])
  })
})

describe('findQueue', () => {
  it('finds the line of a queue number, or null when nothing is bound to it', () => {
    const table: QueueTable = { available: true, queues: parseNfnetlinkQueue(FIXTURE) }
    expect(findQueue(table, 0)?.dropped).toBe(34)
    expect(findQueue(table, 8)).toBeNull()
  })
})

describe('readProcText', () => {
  it('reads a file and returns null for a missing one (module not loaded)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ht-nfq-'))
    onTestFinished(() => rm(dir, { recursive: true, force: true }))
    await writeFile(join(dir, 'nfnetlink_queue'), FIXTURE)
    expect(parseNfnetlinkQueue((await readProcText(join(dir, 'nfnetlink_queue'))) ?? '')).toHaveLength(3)
    expect(await readProcText(join(dir, 'absent'))).toBeNull()
  })
})
