import { describe, expect, it } from 'vitest'
import type { CloseReason } from '../../src/attack/attack.js'
import type { AttackRow } from '../../src/store/attack-query.js'
import { sessionChunks, sessionPackets } from '../../src/store/pcap-session.js'

function row(fields: Partial<AttackRow>): AttackRow {
  return {
    id: '01JZ0000000000000000000001', protocol: 'tcp', family: 4, mode: 'normal', src_ip: '198.18.0.2', src_port: 40_000,
    dst_ip: '198.18.0.1', dst_port: 23, started_at: 1_000_000, ended_at: 1_005_000, close_reason: 'peer-closed',
    bytes_received: 0, bytes_sent: 0, truncated: 0, payload_size: 0, md5: '', sha256: '', sha512: '', response_size: 0,
    response_truncated: 0, response_sha256: null, transcript_truncated: 0, relay_target: null, relay_outcome: null,
    fallback_reason: null, syn_facts: null, payload: Buffer.alloc(0), response: Buffer.alloc(0), transcript: '[]',
    ...fields,
  }
}

// TCP flags of each packet (IPv4 without options: the TCP header starts at byte 20).
function tcpFlags(r: AttackRow): number[] {
  return [...sessionPackets(r)].map((p) => p.packet[33]!)
}

describe('sessionChunks', () => {
  const bytes = { payload: Buffer.from('abcdef'), response: Buffer.from('XY') }

  it('slices the transcript and skips empty chunks', () => {
    const chunks = sessionChunks(row({ ...bytes, transcript: '[["in",0,2],["out",3,2],["in",4,0],["in",9,4]]' }))
    expect(chunks.map((c) => [c.direction, c.offsetMs, c.bytes.toString()])).toEqual([['in', 0, 'ab'], ['out', 3, 'XY'], ['in', 9, 'cdef']])
  })

  it('falls back to payload then response for schema-1 rows and transcripts that do not fit', () => {
    for (const transcript of [null, '[["in",0,7]]', 'not json']) {
      const chunks = sessionChunks(row({ ...bytes, transcript }))
      expect(chunks.map((c) => [c.direction, c.offsetMs, c.bytes.toString()])).toEqual([['in', 0, 'abcdef'], ['out', 0, 'XY']])
    }
  })

  it('appends the bytes a truncated transcript does not list after its last chunk', () => {
    const chunks = sessionChunks(row({ ...bytes, transcript: '[["in",5,1]]', transcript_truncated: 1 }))
    expect(chunks.map((c) => [c.direction, c.offsetMs, c.bytes.toString()])).toEqual([['in', 5, 'a'], ['in', 5, 'bcdef'], ['out', 5, 'XY']])
  })
})

describe('sessionPackets', () => {
  it('opens with SYN, SYN-ACK, ACK and closes as the close reason says', () => {
    const cases: [CloseReason, number[]][] = [
      ['peer-closed', [0x11, 0x11, 0x10]], // the attacker's FIN first
      ['idle-timeout', [0x11, 0x11, 0x10]],
      ['peer-reset', [0x14]],
      ['target-reset', [0x14]],
    ]
    for (const [reason, close] of cases) {
      const flags = tcpFlags(row({ close_reason: reason }))
      expect(flags.slice(0, 3)).toEqual([0x02, 0x12, 0x10])
      expect(flags.slice(3)).toEqual(close)
    }
    // Who closes first: the attacker (source port 40000) on peer-closed, the sensor otherwise.
    const firstFin = (reason: CloseReason): number => [...sessionPackets(row({ close_reason: reason }))][3]!.packet.readUInt16BE(20)
    expect(firstFin('peer-closed')).toBe(40_000)
    expect(firstFin('idle-timeout')).toBe(23)
  })

  it('derives sequence numbers from the attack id only', () => {
    const syn = (id: string): string => [...sessionPackets(row({ id }))][0]!.packet.subarray(24, 28).toString('hex')
    expect(syn('01JZ0000000000000000000001')).toBe(syn('01JZ0000000000000000000001'))
    expect(syn('01JZ0000000000000000000001')).not.toBe(syn('01JZ0000000000000000000002'))
  })

  it('splits a large UDP chunk into datagrams of at most 65,507 bytes and never moves the clock back', () => {
    const payload = Buffer.alloc(140_000, 7)
    const packets = [...sessionPackets(row({ protocol: 'udp', payload, response: Buffer.from('r'), transcript: '[["in",50,140000],["out",10,1]]' }))]
    expect(packets.map((p) => p.packet.length - 28)).toEqual([65_507, 65_507, 140_000 - 2 * 65_507, 1])
    expect(packets.map((p) => p.timestampUs)).toEqual(Array(4).fill(1_000_050_000)) // the reply's offset 10 steps back: held at 50
  })

  it('exports a row whose address is not of its family with the unspecified address', () => {
    const [syn] = [...sessionPackets(row({ family: 6, src_ip: '198.18.0.2', dst_ip: 'fd00::1' }))]
    expect(syn!.packet[0]! >> 4).toBe(6)
    expect(syn!.packet.subarray(8, 24)).toEqual(Buffer.alloc(16))
  })
})
