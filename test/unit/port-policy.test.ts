import { describe, expect, it } from 'vitest'
import { parseConfig } from '../../src/config/load-config.js'
import { parsePortSpec, type PortRange } from '../../src/config/port-spec.js'
import type { Config, ConfigInput } from '../../src/config/schema.js'
import { ConfigError } from '../../src/core/errors.js'
import { buildPortPolicy, type PortPolicyTable } from '../../src/supervisor/port-policy.js'

type PortsInput = NonNullable<ConfigInput['ports']>

/** The ports section exactly as the config loader would hand it over. */
function portsOf(input: PortsInput): Config['ports'] {
  return parseConfig({ ports: input }).ports
}

function policyOf(input: PortsInput, bannerPorts: readonly number[] = [], excluded: readonly PortRange[] = []): PortPolicyTable {
  return buildPortPolicy(portsOf(input), bannerPorts, excluded)
}

function rangesOf(spec: string): PortRange[] {
  const parsed = parsePortSpec(spec)
  if (!parsed.ok) throw new Error(parsed.error)
  return parsed.ranges
}

function configErrorOf(fn: () => unknown): ConfigError {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    return err as ConfigError
  }
  throw new Error('expected a ConfigError, nothing was thrown')
}

describe('default mode', () => {
  it('with no rules every port and protocol gets the default mode', () => {
    const table = policyOf({})
    for (const port of [1, 22, 80, 40_000, 65_535]) {
      expect(table.resolve('tcp', port).mode).toBe('normal')
      expect(table.resolve('udp', port).mode).toBe('normal')
    }
  })

  it('defaultMode ignore applies to every port no rule covers', () => {
    const table = policyOf({ defaultMode: 'ignore', rules: [{ ports: '80', mode: 'normal' }] })
    expect(table.resolve('tcp', 81).mode).toBe('ignore')
    expect(table.resolve('udp', 79).mode).toBe('ignore')
    expect(table.resolve('tcp', 80).mode).toBe('normal')
  })
})

describe('specificity', () => {
  it('the narrower range wins whichever rule comes first', () => {
    const wideFirst = policyOf({ rules: [{ ports: '1-1024', mode: 'normal' }, { ports: '22', mode: 'ignore' }] })
    const narrowFirst = policyOf({ rules: [{ ports: '22', mode: 'ignore' }, { ports: '1-1024', mode: 'normal' }] })
    for (const table of [wideFirst, narrowFirst]) {
      expect(table.resolve('tcp', 22).mode).toBe('ignore')
      expect(table.resolve('udp', 22).mode).toBe('ignore')
      expect(table.resolve('tcp', 21).mode).toBe('normal')
      expect(table.resolve('tcp', 23).mode).toBe('normal')
      expect(table.resolve('tcp', 1024).mode).toBe('normal')
    }
  })

  it('three nested ranges resolve to the innermost, in any order', () => {
    const rules = [
      { ports: '1-60000', mode: 'ignore' as const },
      { ports: '8000-9000', mode: 'normal' as const, reply: 'silence' as const },
      { ports: '8080', mode: 'normal' as const, reply: 'banner' as const },
    ]
    const orders = [
      [0, 1, 2],
      [2, 1, 0],
      [1, 0, 2],
      [2, 0, 1],
    ]
    for (const order of orders) {
      const table = policyOf({ defaultMode: 'normal', rules: order.map((i) => rules[i]!) })
      expect(table.resolve('tcp', 8080)).toMatchObject({ mode: 'normal', reply: 'banner' })
      expect(table.resolve('tcp', 8081)).toMatchObject({ mode: 'normal', reply: 'silence' })
      expect(table.resolve('tcp', 7999).mode).toBe('ignore')
      expect(table.resolve('tcp', 60_001).mode).toBe('normal')
    }
  })

  it('a rule listing several items is judged per item', () => {
    // Rule 0 covers 22 alone (width 1) and 1000-2000; rule 1 covers 1-100 and 1500.
    const table = policyOf({ rules: [{ ports: '22,1000-2000', mode: 'ignore' }, { ports: '1-100,1500', mode: 'normal', reply: 'silence' }] })
    expect(table.resolve('tcp', 22).mode).toBe('ignore')
    expect(table.resolve('tcp', 23)).toMatchObject({ mode: 'normal', reply: 'silence' })
    expect(table.resolve('tcp', 1500)).toMatchObject({ mode: 'normal', reply: 'silence' })
    expect(table.resolve('tcp', 1501).mode).toBe('ignore')
  })
})

describe('duplicates', () => {
  it('two rules with exactly the same ports are refused, naming both', () => {
    const err = configErrorOf(() => policyOf({ rules: [{ ports: '80', mode: 'normal' }, { ports: '443', mode: 'normal' }, { ports: '80', mode: 'ignore' }] }))
    expect(err.code).toBe('HT_ERR_CONFIG_INVALID')
    expect(err.issues).toHaveLength(1)
    expect(err.issues[0]!.path).toBe('ports.rules.2.ports')
    expect(err.issues[0]!.message).toContain('ports.rules.0')
  })

  it('the same range for one protocol is a duplicate even when written differently', () => {
    const err = configErrorOf(() => policyOf({ rules: [{ ports: '1000-2000', mode: 'normal' }, { ports: ' 1000-2000/udp ', mode: 'ignore' }] }))
    expect(err.issues[0]!.path).toBe('ports.rules.1.ports')
    expect(err.issues[0]!.message).toContain('ports.rules.0')
  })

  it('the same port for different protocols is not a duplicate', () => {
    const table = policyOf({ rules: [{ ports: '53/tcp', mode: 'ignore' }, { ports: '53/udp', mode: 'normal', reply: 'banner' }] })
    expect(table.resolve('tcp', 53).mode).toBe('ignore')
    expect(table.resolve('udp', 53)).toMatchObject({ mode: 'normal', reply: 'banner' })
  })

  it('overlapping but different ranges are not duplicates', () => {
    expect(() => policyOf({ rules: [{ ports: '1-100', mode: 'normal' }, { ports: '50-150', mode: 'ignore' }] })).not.toThrow()
  })
})

describe('per protocol', () => {
  it('a rule with a protocol suffix leaves the other protocol to the default', () => {
    const table = policyOf({ rules: [{ ports: '161/udp', mode: 'ignore' }, { ports: '22/tcp', mode: 'ignore' }] })
    expect(table.resolve('udp', 161).mode).toBe('ignore')
    expect(table.resolve('tcp', 161).mode).toBe('normal')
    expect(table.resolve('tcp', 22).mode).toBe('ignore')
    expect(table.resolve('udp', 22).mode).toBe('normal')
  })

  it('a narrower rule for one protocol does not affect the other protocol', () => {
    const table = policyOf({ rules: [{ ports: '1-1000', mode: 'ignore' }, { ports: '53/udp', mode: 'normal', reply: 'on-data' }] })
    expect(table.resolve('udp', 53)).toMatchObject({ mode: 'normal', reply: 'on-data' })
    expect(table.resolve('tcp', 53).mode).toBe('ignore')
  })
})

describe('excluded ranges', () => {
  it('excluded ports are ignore even when a narrower rule serves them', () => {
    const table = policyOf({ rules: [{ ports: '22', mode: 'normal', reply: 'banner' }, { ports: '2222/tcp', mode: 'normal' }] }, [], rangesOf('22/tcp,2222'))
    expect(table.resolve('tcp', 22).mode).toBe('ignore')
    expect(table.resolve('tcp', 2222).mode).toBe('ignore')
    expect(table.resolve('udp', 2222).mode).toBe('ignore')
    // Only the excluded protocol is overridden.
    expect(table.resolve('udp', 22)).toMatchObject({ mode: 'normal', reply: 'banner' })
  })

  it('an excluded range overrides the default mode and ends where it ends', () => {
    const table = policyOf({}, [], rangesOf('100-200/tcp'))
    expect(table.resolve('tcp', 99).mode).toBe('normal')
    expect(table.resolve('tcp', 100).mode).toBe('ignore')
    expect(table.resolve('tcp', 200).mode).toBe('ignore')
    expect(table.resolve('tcp', 201).mode).toBe('normal')
    expect(table.resolve('udp', 150).mode).toBe('normal')
  })
})

describe('reply timing', () => {
  it('auto resolves to banner for banner ports and on-data for the others', () => {
    const table = policyOf({ rules: [{ ports: '1-65535', mode: 'normal', reply: 'auto' }] }, [21, 25])
    expect(table.resolve('tcp', 21)).toMatchObject({ mode: 'normal', reply: 'banner' })
    expect(table.resolve('tcp', 25)).toMatchObject({ mode: 'normal', reply: 'banner' })
    expect(table.resolve('tcp', 80)).toMatchObject({ mode: 'normal', reply: 'on-data' })
    expect(table.resolve('udp', 21)).toMatchObject({ mode: 'normal', reply: 'banner' })
  })

  it('the default mode uses auto timing too', () => {
    const table = policyOf({}, [3306])
    expect(table.resolve('tcp', 3306).reply).toBe('banner')
    expect(table.resolve('tcp', 3307).reply).toBe('on-data')
  })

  it('an explicit timing is kept, banner port or not', () => {
    const table = policyOf(
      { rules: [{ ports: '21', mode: 'normal', reply: 'on-data' }, { ports: '80', mode: 'normal', reply: 'banner' }, { ports: '23', mode: 'normal', reply: 'silence' }] },
      [21, 23],
    )
    expect(table.resolve('tcp', 21)).toMatchObject({ mode: 'normal', reply: 'on-data' })
    expect(table.resolve('tcp', 80)).toMatchObject({ mode: 'normal', reply: 'banner' })
    expect(table.resolve('tcp', 23)).toMatchObject({ mode: 'normal', reply: 'silence' })
  })

  it('resolve never returns auto', () => {
    const table = policyOf({ rules: [{ ports: '1-30000', mode: 'normal' }, { ports: '30001-65535', mode: 'ignore' }] }, [22])
    for (let port = 1; port <= 65_535; port += 97) expect(table.resolve('tcp', port).reply).not.toBe('auto')
  })
})

describe('edges', () => {
  it('ports 1 and 65535 are served by the rules that name them', () => {
    const table = policyOf({ rules: [{ ports: '1', mode: 'ignore' }, { ports: '65535/udp', mode: 'ignore' }] })
    expect(table.resolve('tcp', 1).mode).toBe('ignore')
    expect(table.resolve('udp', 1).mode).toBe('ignore')
    expect(table.resolve('tcp', 2).mode).toBe('normal')
    expect(table.resolve('udp', 65_535).mode).toBe('ignore')
    expect(table.resolve('tcp', 65_535).mode).toBe('normal')
    expect(table.resolve('udp', 65_534).mode).toBe('normal')
  })

  it('a full-range rule covers both ends', () => {
    const table = policyOf({ defaultMode: 'normal', rules: [{ ports: '1-65535', mode: 'ignore' }] })
    expect(table.resolve('tcp', 1).mode).toBe('ignore')
    expect(table.resolve('tcp', 65_535).mode).toBe('ignore')
    expect(table.resolve('udp', 32_768).mode).toBe('ignore')
  })
})

describe('relay destinations', () => {
  it('carries mirrorPort and the proxy target name of the rule, and defaultProxy per protocol', () => {
    const config = parseConfig({
      proxy: { targets: { ssh: { host: '192.0.2.1', port: 22, protocol: 'tcp' }, dns: { host: '192.0.2.2', port: 53, protocol: 'udp' } } },
      ports: {
        defaultMode: 'proxy',
        defaultProxy: { tcp: 'ssh', udp: 'dns' },
        rules: [
          { ports: '445/tcp', mode: 'mirror', mirrorPort: 4445 },
          { ports: '80', mode: 'mirror' },
          { ports: '8000-9000', mode: 'normal' },
        ],
      },
    })
    const table = buildPortPolicy(config.ports, [])
    expect(table.resolve('tcp', 445)).toEqual({ mode: 'mirror', reply: 'on-data', mirrorPort: 4445, proxy: null })
    expect(table.resolve('udp', 80)).toEqual({ mode: 'mirror', reply: 'on-data', mirrorPort: null, proxy: null })
    expect(table.resolve('tcp', 2222)).toEqual({ mode: 'proxy', reply: 'on-data', mirrorPort: null, proxy: 'ssh' })
    expect(table.resolve('udp', 5353)).toEqual({ mode: 'proxy', reply: 'on-data', mirrorPort: null, proxy: 'dns' })
    expect(table.resolve('tcp', 8080)).toEqual({ mode: 'normal', reply: 'on-data', mirrorPort: null, proxy: null })
  })

  it('returns the same frozen object for the same rule and timing (nothing allocated per SYN)', () => {
    const table = policyOf({ rules: [{ ports: '1000-2000/tcp', mode: 'mirror' }] })
    expect(table.resolve('tcp', 1000)).toBe(table.resolve('tcp', 1999))
    expect(Object.isFrozen(table.resolve('tcp', 1000))).toBe(true)
  })
})
