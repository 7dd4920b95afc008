import { describe, expect, it } from 'vitest'
import { waitForHandshakes } from '../../src/core/pending-handshakes.js'
import { procNetLocalPorts, SOCKET_STATE } from '../../src/core/proc-net.js'

const HEADER = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n'

describe('procNetLocalPorts', () => {
  it('takes the local ports of sockets in the asked state only', () => {
    const text = [
      '   0: 00000000:0978 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0 100 0 0 10 0', // listening on 2424
      '   1: 0100A8C6:0978 0200A8C6:C350 03 00000000:00000000 02:00000064 00000000     0        0 0 1 0', // SYN_RECV on 2424
      '   2: 0100A8C6:1F90 0200A8C6:C351 03 00000000:00000000 02:00000064 00000000     0        0 0 1 0', // SYN_RECV on 8080
      '   3: 0100A8C6:0016 0200A8C6:C352 01 00000000:00000000 00:00000000 00000000     0        0 1004 1 0', // established
      '   4: garbage 03',
    ].join('\n')
    expect([...procNetLocalPorts(HEADER + text, SOCKET_STATE.tcpSynRecv)].sort((a, b) => a - b)).toEqual([2424, 8080])
    expect([...procNetLocalPorts(HEADER + text, SOCKET_STATE.tcpListen)]).toEqual([2424])
  })
})

describe('waitForHandshakes', () => {
  /** A read that returns each set in turn, then the last one forever; `calls` counts the reads. */
  const reads = (...sets: number[][]): { read: () => Promise<ReadonlySet<number>>; calls: () => number } => {
    let i = 0
    return { read: async () => new Set(sets[Math.min(i++, sets.length - 1)]), calls: () => i }
  }

  it('returns after one look when no handshake of ours is under way', async () => {
    const r = reads([22, 8080])
    const wait = await waitForHandshakes((port) => port === 2424, { graceMs: 2_000, read: r.read })
    expect(wait).toMatchObject({ initiallyPending: 0, pending: 0 })
    expect(r.calls()).toBe(1)
  })

  it('looks again until ours have completed', async () => {
    const r = reads([2424, 2425, 22], [2425], [22])
    const wait = await waitForHandshakes((port) => port >= 2000, { graceMs: 2_000, read: r.read })
    expect(wait).toMatchObject({ initiallyPending: 2, pending: 0 })
    expect(r.calls()).toBe(3)
  })

  it('gives up at the grace, saying how many are left', async () => {
    const wait = await waitForHandshakes(() => true, { graceMs: 120, read: reads([2424]).read })
    expect(wait).toMatchObject({ initiallyPending: 1, pending: 1 })
    expect(wait.waitedMs).toBeGreaterThanOrEqual(120)
  })
})
