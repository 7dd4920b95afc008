import os from 'node:os'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { parseCidr, type CidrRange } from '../../src/config/cidr.js'
import { AddressGuard, type AddressGuardOptions, type AddressVerdict } from '../../src/responders/address-guard.js'

type InterfaceTable = ReturnType<typeof os.networkInterfaces>

function v4(address: string, netmask: string): os.NetworkInterfaceInfo {
  return { address, netmask, family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: null }
}

function v6(address: string, netmask = 'ffff:ffff:ffff:ffff::'): os.NetworkInterfaceInfo {
  return { address, netmask, family: 'IPv6', mac: '02:00:00:00:00:01', internal: false, cidr: null, scopeid: 0 }
}

function ranges(...texts: string[]): CidrRange[] {
  return texts.map((text) => {
    const result = parseCidr(text)
    if (!result.ok) throw new Error(result.error)
    return result.range
  })
}

const TABLE: InterfaceTable = {
  lo: [v4('127.0.0.1', '255.0.0.0'), v6('::1', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff')],
  eth0: [v4('192.0.2.10', '255.255.255.0'), v6('2001:db8::10'), v6('fe80::10')],
  eth1: [v4('198.51.100.1', '255.255.255.254')], // /31: no broadcast address
  tun0: [v4('203.0.113.5', '255.255.255.255')], // /32: no broadcast address
  eth2: [v4('10.1.2.3', '255.255.240.0')], // /20: broadcast 10.1.15.255
  gone: undefined,
}

function guardOf(options: Partial<AddressGuardOptions> = {}): AddressGuard {
  return new AddressGuard({ deny: [], interfaces: () => TABLE, ...options })
}

describe('AddressGuard: special addresses', () => {
  const guard = guardOf()

  it.each<[string, AddressVerdict]>([
    ['0.0.0.0', 'special-address'], ['0.255.255.255', 'special-address'], ['1.0.0.0', null],
    ['126.255.255.255', null], ['127.0.0.0', 'special-address'], ['127.0.0.1', 'special-address'],
    ['127.255.255.255', 'special-address'], ['128.0.0.0', null],
    ['169.253.255.255', null], ['169.254.0.0', 'special-address'], ['169.254.169.254', 'special-address'],
    ['169.254.255.255', 'special-address'], ['169.255.0.0', null],
    ['223.255.255.255', null], ['224.0.0.0', 'special-address'], ['239.255.255.255', 'special-address'],
    ['240.0.0.0', 'special-address'], ['255.255.255.254', 'special-address'], ['255.255.255.255', 'special-address'],
  ])('IPv4 %s -> %s', (address, verdict) => {
    expect(guard.check(address)).toBe(verdict)
  })

  it.each<[string, AddressVerdict]>([
    ['::', 'special-address'], ['::1', 'special-address'], ['::0.0.0.2', 'special-address'],
    ['::ffff:ffff', 'special-address'], ['::1:0:0', null], ['::fffe:ffff:ffff', null],
    ['fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff', null], ['fe80::', 'special-address'],
    ['febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'special-address'], ['fec0::', null],
    ['feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', null], ['ff00::', 'special-address'], ['ff02::1', 'special-address'],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'special-address'], ['2001:db8::1', null],
  ])('IPv6 %s -> %s', (address, verdict) => {
    expect(guard.check(address)).toBe(verdict)
  })

  it.each(['::ffff:127.0.0.1', '::ffff:7f00:1', '::FFFF:169.254.169.254', '0:0:0:0:0:ffff:e000:1', '::ffff:0.0.0.0'])(
    'refuses the IPv4-mapped form %s like its IPv4 address',
    (address) => {
      expect(guard.check(address)).toBe('special-address')
    },
  )

  it.each(['', 'localhost', 'fe80::1%eth0', '1.2.3.4 ', '01.2.3.4', '１.２.３.４', 'x'.repeat(100_000)])(
    'fails closed on the unparseable %j',
    (address) => {
      expect(guard.check(address)).toBe('special-address')
    },
  )

  it('fails closed on non-strings (a destroyed socket has no remoteAddress)', () => {
    for (const value of [undefined, null, 42, {}]) {
      expect(guard.check(value as unknown as string)).toBe('special-address')
    }
  })

  it('never throws, whatever the input', () => {
    const verdicts = new Set<AddressVerdict>(['own-address', 'special-address', 'denied', null])
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.ipV4(), fc.ipV6()), (address) => {
        expect(verdicts.has(guard.check(address))).toBe(true)
      }),
      { numRuns: 2000 },
    )
  })
})

describe('AddressGuard: own addresses', () => {
  const guard = guardOf()

  it.each([
    '192.0.2.10', '::ffff:192.0.2.10', '::ffff:c000:20a', '2001:db8::10', '2001:DB8:0:0::10', '198.51.100.1',
    '203.0.113.5', '10.1.2.3',
  ])('refuses %s as own-address', (address) => {
    expect(guard.check(address)).toBe('own-address')
  })

  it('allows the neighbours of own addresses', () => {
    expect(guard.check('192.0.2.11')).toBeNull()
    expect(guard.check('2001:db8::11')).toBeNull()
    expect(guard.check('198.51.100.0')).toBeNull() // the peer on a /31 is a real host
  })

  it('refuses the directed broadcast of each IPv4 interface, in any form', () => {
    expect(guard.check('192.0.2.255')).toBe('special-address')
    expect(guard.check('::ffff:192.0.2.255')).toBe('special-address')
    expect(guard.check('10.1.15.255')).toBe('special-address')
    expect(guard.check('192.0.2.254')).toBeNull()
    expect(guard.check('10.1.16.255')).toBeNull()
    expect(guard.check('203.0.113.255')).toBeNull() // tun0 is a /32
  })

  it('checks special ranges before own addresses', () => {
    expect(guard.check('127.0.0.1')).toBe('special-address')
    expect(guard.check('fe80::10')).toBe('special-address')
  })
})

describe('AddressGuard: deny list', () => {
  const guard = guardOf({ deny: ranges('10.0.0.0/8', '2001:db8:bad::/48', '198.18.0.0/15') })

  it('refuses addresses in a denied range, in any form', () => {
    expect(guard.check('10.200.0.1')).toBe('denied')
    expect(guard.check('::ffff:10.200.0.1')).toBe('denied')
    expect(guard.check('2001:db8:bad:1::')).toBe('denied')
    expect(guard.check('198.19.255.255')).toBe('denied')
    expect(guard.check('198.20.0.0')).toBeNull()
    expect(guard.check('11.0.0.0')).toBeNull()
    expect(guard.check('2001:db8:bae::')).toBeNull()
  })

  it('reports own-address before denied', () => {
    expect(guard.check('10.1.2.3')).toBe('own-address')
  })

  it('a mapped range written as ::ffff:0:0/96 denies all of IPv4', () => {
    const all = guardOf({ deny: ranges('::ffff:0:0/96') })
    expect(all.check('8.8.8.8')).toBe('denied')
    expect(all.check('2001:db8::1')).toBeNull()
  })
})

describe('AddressGuard: refreshing the interface list', () => {
  interface Setup { guard: AddressGuard; table: InterfaceTable; clock: { t: number }; reads: { n: number } }

  function setup(refreshMs?: number): Setup {
    const table: InterfaceTable = { eth0: [v4('192.0.2.10', '255.255.255.0')] }
    const clock = { t: 1000 }
    const reads = { n: 0 }
    const interfaces = (): InterfaceTable => {
      reads.n++
      return table
    }
    const options = { deny: [], interfaces, now: () => clock.t }
    const guard = new AddressGuard(refreshMs === undefined ? options : { ...options, refreshMs })
    return { guard, table, clock, reads }
  }

  it('sees an added address once the list is refreshMs old, and not before', () => {
    const { guard, table, clock, reads } = setup(2000)
    expect(guard.check('192.0.2.20')).toBeNull()
    table['eth0'] = [v4('192.0.2.10', '255.255.255.0'), v4('192.0.2.20', '255.255.255.0')]
    clock.t += 1999
    expect(guard.check('192.0.2.20')).toBeNull()
    expect(reads.n).toBe(1) // checks within refreshMs reuse the list
    clock.t += 1
    expect(guard.check('192.0.2.20')).toBe('own-address')
    expect(reads.n).toBe(2)
  })

  it('defaults refreshMs to 5000', () => {
    const { guard, table, clock } = setup()
    expect(guard.check('198.51.100.7')).toBeNull()
    table['wg0'] = [v4('198.51.100.7', '255.255.255.255')]
    clock.t += 4999
    expect(guard.check('198.51.100.7')).toBeNull()
    clock.t += 1
    expect(guard.check('198.51.100.7')).toBe('own-address')
  })

  it('forgets a removed address and its broadcast', () => {
    const { guard, table, clock } = setup(2000)
    expect(guard.check('192.0.2.10')).toBe('own-address')
    expect(guard.check('192.0.2.255')).toBe('special-address')
    table['eth0'] = []
    clock.t += 2000
    expect(guard.check('192.0.2.10')).toBeNull()
    expect(guard.check('192.0.2.255')).toBeNull()
  })

  it('refresh() reads the list at once', () => {
    const { guard, table } = setup(60_000)
    expect(guard.check('2001:db8::20')).toBeNull()
    table['eth1'] = [v6('2001:db8::20')]
    guard.refresh()
    expect(guard.check('2001:db8::20')).toBe('own-address')
  })

  it('reads the list again when the clock goes backwards', () => {
    const { guard, table, clock } = setup(2000)
    expect(guard.check('192.0.2.20')).toBeNull()
    table['eth0'] = [v4('192.0.2.20', '255.255.255.0')]
    clock.t -= 1
    expect(guard.check('192.0.2.20')).toBe('own-address')
  })

  it('fails closed while the list cannot be read, and recovers', () => {
    let broken = true
    let t = 0
    const guard = new AddressGuard({
      deny: [],
      refreshMs: 100,
      now: () => t,
      interfaces: () => {
        if (broken) throw new Error('uv_interface_addresses failed')
        return TABLE
      },
    })
    expect(guard.check('8.8.8.8')).toBe('own-address')
    expect(guard.check('127.0.0.1')).toBe('special-address')
    broken = false
    t += 100
    expect(guard.check('8.8.8.8')).toBeNull()
  })
})

describe('AddressGuard: the real interface list', () => {
  it('refuses 127.0.0.1, ::1 and every local address of this machine', () => {
    const guard = new AddressGuard({ deny: [] })
    expect(guard.check('127.0.0.1')).toBe('special-address')
    expect(guard.check('::1')).toBe('special-address')
    const addresses = Object.values(os.networkInterfaces()).flatMap((entries) => (entries ?? []).map((e) => e.address))
    expect(addresses.length).toBeGreaterThan(0)
    for (const address of addresses) {
      expect(guard.check(address), address).not.toBeNull()
    }
  })
})
