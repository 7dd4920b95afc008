import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { parseProcNetPorts } from '../../src/monitor/ebpf/port-owners.js'

const HEADER = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n'

describe('parseProcNetPorts', () => {
  it('takes listening TCP sockets and unconnected UDP sockets, IPv4 and IPv6', () => {
    const tcp = [
      '   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0 100 0 0 10 0',
      '   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1002 1 0 100 0 0 10 0',
      '   2: 0100A8C0:0016 0200A8C0:D431 01 00000000:00000000 02:000A7D6A 00000000     0        0 1003 4 0 20 4 30 10 -1', // established
    ].join('\n')
    expect([...parseProcNetPorts(HEADER + tcp, 'tcp')].sort((a, b) => a - b)).toEqual([22, 8080])
    const tcp6 = '   0: 00000000000000000000000000000000:1F40 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 2001 1 0 100 0 0 10 0'
    expect([...parseProcNetPorts(HEADER + tcp6, 'tcp')]).toEqual([8000])
    const udp = [
      ' 1100: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3001 2 0 0',
      ' 1101: 0100007F:A1B2 0100007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 3002 2 0 0', // a connected client
    ].join('\n')
    expect([...parseProcNetPorts(HEADER + udp, 'udp')]).toEqual([53])
  })

  it('skips malformed lines and never throws, whatever the text', () => {
    expect([...parseProcNetPorts(`${HEADER}garbage\n   0: nocolon 0 0A\n   1: 00000000:FFFFF 0 0A\n   2: 00000000:0000 0 0A\n`, 'tcp')]).toEqual([])
    fc.assert(
      fc.property(fc.string({ maxLength: 2_000 }), (text) => {
        for (const port of parseProcNetPorts(text, 'tcp')) expect(port >= 1 && port <= 65_535).toBe(true)
      }),
    )
  })
})
