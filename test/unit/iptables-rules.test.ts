import { describe, expect, it } from 'vitest'

import { parsePortSpec, type PortRange } from '../../src/config/port-spec.js'
import { hasErrorCode } from '../../src/core/errors.js'
import { buildAcceptSet, buildQueueSet, buildRuleSets, formatRuleSet, sshExcludeRanges, type RuleOptions } from '../../src/rules/iptables-rules.js'
import { hasFirewallCapabilities, formatCommand } from '../../src/rules/rules-exec.js'

function ranges(spec: string): PortRange[] {
  const parsed = parsePortSpec(spec)
  if (!parsed.ok) throw new Error(parsed.error)
  return parsed.ranges
}

const BASE: RuleOptions = { queue: 7, queueCount: 1, exclude: [], interface: null, ipv6: true, includeLoopback: false, mark: 0x400000, skipQueueForServedPorts: false }
// The queue rules only: most tests are about them.
const buildRuleSet = buildQueueSet

describe('buildRuleSets', () => {
  it('puts the ACCEPT of marked packets in filter first, then the queue rules in mangle', () => {
    const [accept, queue] = buildRuleSets(BASE, 4)
    expect(accept).toEqual({ family: 4, table: 'filter', chain: 'HONEYTRAP', parent: 'INPUT', jump: ['-j', 'HONEYTRAP'], rules: [['-m', 'mark', '--mark', '0x400000/0x400000', '-j', 'ACCEPT']] })
    expect(queue.table).toBe('mangle')
    expect(queue.rules.at(-1)).toContain('NFQUEUE')
  })

  it('writes the configured mark in hex, as value and mask, and keeps the filter jump off the interface', () => {
    const accept = buildAcceptSet({ mark: 0x80000001 }, 6)
    expect(accept.rules).toEqual([['-m', 'mark', '--mark', '0x80000001/0x80000001', '-j', 'ACCEPT']])
    expect(buildRuleSets({ ...BASE, interface: 'eth0' }, 4)[0].jump).toEqual(['-j', 'HONEYTRAP'])
  })

  it.each([0, -1, 0x1_0000_0000, 1.5, Number.NaN])('rejects mark %s with HT_ERR_CONFIG_INVALID naming rules.mark', (mark) => {
    expect(() => buildRuleSets({ ...BASE, mark }, 4)).toThrow(/rules\.mark/)
    expect(() => buildQueueSet({ ...BASE, mark }, 4)).toThrow(/rules\.mark/)
  })
})

describe('buildQueueSet', () => {
  it('returns SYNs to the sensor\'s own (transparent, marked) listeners right before the queue rules when asked', () => {
    const rules = buildQueueSet({ ...BASE, skipQueueForServedPorts: true, exclude: ranges('22/tcp') }, 6).rules
    expect(rules.slice(1, 3)).toEqual([
      ['-p', 'tcp', '--dport', '22', '-j', 'RETURN'],
      ['-p', 'tcp', '--syn', '-m', 'socket', '--transparent', '--nowildcard', '--restore-skmark', '-m', 'mark', '--mark', '0x400000/0x400000', '-j', 'RETURN'],
    ])
    expect(rules.slice(3).map((r) => r.at(-4))).toEqual(['NFQUEUE', 'NFQUEUE'])
  })

  it('returns loopback, then each exclusion, then the two queue rules, in that order', () => {
    const set = buildRuleSet({ ...BASE, exclude: ranges('22/tcp,53,8000-8100/udp') }, 4)
    expect(set.table).toBe('mangle')
    expect(set.chain).toBe('HONEYTRAP')
    expect(set.parent).toBe('INPUT')
    expect(set.jump).toEqual(['-j', 'HONEYTRAP'])
    expect(set.rules).toEqual([
      ['-i', 'lo', '-j', 'RETURN'],
      ['-p', 'tcp', '--dport', '22', '-j', 'RETURN'],
      ['-p', 'tcp', '--dport', '53', '-j', 'RETURN'],
      ['-p', 'udp', '--dport', '53', '-j', 'RETURN'],
      ['-p', 'udp', '--dport', '8000:8100', '-j', 'RETURN'],
      ['-p', 'tcp', '--syn', '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'NFQUEUE', '--queue-num', '7', '--queue-bypass'],
      ['-p', 'udp', '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'NFQUEUE', '--queue-num', '7', '--queue-bypass'],
    ])
  })

  it('balances flows over several queues with --queue-balance when queueCount > 1', () => {
    const rules = buildRuleSet({ ...BASE, queueCount: 4 }, 4).rules
    expect(rules.slice(-2)).toEqual([
      ['-p', 'tcp', '--syn', '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'NFQUEUE', '--queue-balance', '7:10', '--queue-bypass'],
      ['-p', 'udp', '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'NFQUEUE', '--queue-balance', '7:10', '--queue-bypass'],
    ])
  })

  it('refuses a queue count that runs past queue 65535, or is not a positive integer', () => {
    expect(() => buildRuleSet({ ...BASE, queue: 65_534, queueCount: 3 }, 4)).toThrow(/past queue 65535/)
    expect(() => buildRuleSet({ ...BASE, queueCount: 0 }, 4)).toThrow(/past queue 65535|queue count/)
  })

  it('gives the same rules for both families', () => {
    const opts = { ...BASE, exclude: ranges('22/tcp') }
    expect(buildRuleSet(opts, 6).rules).toEqual(buildRuleSet(opts, 4).rules)
    expect(buildRuleSet(opts, 6).family).toBe(6)
  })

  it('drops the loopback RETURN when loopback is included', () => {
    const set = buildRuleSet({ ...BASE, includeLoopback: true }, 4)
    expect(set.rules.some((r) => r.includes('lo'))).toBe(false)
    expect(set.rules).toHaveLength(2)
  })

  it('puts the interface on the jump and leaves loopback alone, since lo never reaches the chain', () => {
    const set = buildRuleSet({ ...BASE, interface: 'eth0' }, 4)
    expect(set.jump).toEqual(['-i', 'eth0', '-j', 'HONEYTRAP'])
    expect(set.rules.some((r) => r.includes('lo'))).toBe(false)
    expect(buildRuleSet({ ...BASE, interface: 'ens+' }, 4).jump).toEqual(['-i', 'ens+', '-j', 'HONEYTRAP'])
  })

  it('writes each exclusion once even when listed twice (ssh detection and the config often both say 22)', () => {
    const exclude = [...ranges('22/tcp'), ...sshExcludeRanges([22, 2222, 22])]
    const returns = buildRuleSet({ ...BASE, exclude }, 4).rules.filter((r) => r.includes('--dport'))
    expect(returns).toEqual([
      ['-p', 'tcp', '--dport', '22', '-j', 'RETURN'],
      ['-p', 'tcp', '--dport', '2222', '-j', 'RETURN'],
    ])
  })

  it('accepts the queue range ends', () => {
    expect(buildRuleSet({ ...BASE, queue: 0 }, 4).rules.at(-1)).toContain('0')
    expect(buildRuleSet({ ...BASE, queue: 65_535 }, 4).rules.at(-1)).toContain('65535')
  })

  it.each([-1, 65_536, 1.5, Number.NaN])('rejects queue %s with HT_ERR_CONFIG_INVALID', (queue) => {
    expect.assertions(1)
    try {
      buildRuleSet({ ...BASE, queue }, 4)
    } catch (err) {
      expect(hasErrorCode(err, 'HT_ERR_CONFIG_INVALID')).toBe(true)
    }
  })

  it.each(['', 'eth0 -j ACCEPT', 'a-very-long-interface-name', 'eth/0', '-j'])('rejects interface %j', (name) => {
    expect.assertions(1)
    try {
      buildRuleSet({ ...BASE, interface: name }, 4)
    } catch (err) {
      expect(hasErrorCode(err, 'HT_ERR_CONFIG_INVALID')).toBe(true)
    }
  })
})

describe('sshExcludeRanges', () => {
  it('makes one TCP-only range per unique port', () => {
    expect(sshExcludeRanges([22, 2222, 22])).toEqual([
      { protocols: ['tcp'], from: 22, to: 22 },
      { protocols: ['tcp'], from: 2222, to: 2222 },
    ])
  })
})

describe('formatRuleSet', () => {
  it('lists the commands install runs, with the right binary per family', () => {
    const lines = formatRuleSet(buildRuleSet({ ...BASE, exclude: ranges('22/tcp'), interface: 'eth0' }, 6))
    expect(lines[0]).toMatch(/^ip6tables -w -t mangle -N HONEYTRAP/)
    expect(lines).toContain('ip6tables -w -t mangle -F HONEYTRAP')
    expect(lines).toContain('ip6tables -w -t mangle -A HONEYTRAP -p tcp --dport 22 -j RETURN')
    expect(lines.at(-1)).toMatch(/^ip6tables -w -t mangle -I INPUT 1 -i eth0 -j HONEYTRAP/)
    expect(formatRuleSet(buildAcceptSet(BASE, 4))).toContain('iptables -w -t filter -A HONEYTRAP -m mark --mark 0x400000/0x400000 -j ACCEPT')
  })
})

describe('hasFirewallCapabilities', () => {
  it('needs both CAP_NET_ADMIN (bit 12) and CAP_NET_RAW (bit 13) in CapEff', () => {
    expect(hasFirewallCapabilities('Name:\tnode\nCapEff:\t000001ffffffffff\n')).toBe(true)
    expect(hasFirewallCapabilities('CapEff:\t0000000000003000\n')).toBe(true)
    expect(hasFirewallCapabilities('CapEff:\t0000000000001000\n')).toBe(false)
    expect(hasFirewallCapabilities('CapEff:\t0000000000000000\n')).toBe(false)
    expect(hasFirewallCapabilities('no such line')).toBe(false)
  })
})

describe('formatCommand', () => {
  it('quotes only what a shell would split or expand, so the text pastes back', () => {
    expect(formatCommand('iptables', ['-w', '10', '-A', 'HONEYTRAP', '--dport', '1000:2000'])).toBe('iptables -w 10 -A HONEYTRAP --dport 1000:2000')
    expect(formatCommand('iptables', ['--comment', "it's here"])).toBe(`iptables --comment 'it'\\''s here'`)
  })
})
