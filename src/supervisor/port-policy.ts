import type { Protocol, ResponderMode } from '../attack/attack.js'
import { parsePortSpec, type PortRange } from '../config/port-spec.js'
import type { Config, ReplyTiming } from '../config/schema.js'
import { ConfigError } from '../core/errors.js'

/** What to do with one (protocol, port): the mode, when to send the template, and the relay's destination. */
export interface PortPolicy {
  readonly mode: ResponderMode
  readonly reply: Exclude<ReplyTiming, 'auto'> // normal mode, and relays that fall back to it
  readonly mirrorPort: number | null // mirror: the port to connect back to; null for the attacked port
  readonly proxy: string | null // proxy: the name of the target in proxy.targets
}

interface RulePolicy {
  readonly mode: ResponderMode
  readonly reply: ReplyTiming
  readonly mirrorPort: number | null
  readonly proxy: string | null
}

/** Answers "how is this port served" in O(1) on the SYN path. */
export interface PortPolicyTable {
  resolve(protocol: Protocol, port: number): PortPolicy
}

/**
 * Compiles `ports` into two 65,536-entry lookup tables. Overlapping rules are resolved by specificity, not order:
 * the rule with the smallest range wins, so "1-1024 normal" plus "22 ignore" means what it says whichever comes first.
 * Two rules covering exactly the same ports and protocol are a config error (the original made duplicates fatal
 * without saying which; here the message names both). `excluded` ranges (the capture rules' exclude list) are `ignore`
 * whatever the rules say, so a hand-made capture rule without the excludes still leaves those ports alone.
 */
export function buildPortPolicy(ports: Config['ports'], bannerPorts: readonly number[], excluded: readonly PortRange[] = []): PortPolicyTable {
  const banner = new Set(bannerPorts)
  const policies: RulePolicy[] = []
  const seen = new Map<string, number>()
  const tables: Record<Protocol, Uint16Array> = { tcp: new Uint16Array(65_536), udp: new Uint16Array(65_536) }

  const entries: Array<{ protocol: Protocol; from: number; to: number; policyIndex: number }> = []
  ports.rules.forEach((rule, ruleIndex) => {
    const parsed = parsePortSpec(rule.ports)
    if (!parsed.ok) throw new ConfigError(`ports.rules.${ruleIndex}.ports: ${parsed.error}`, [{ path: `ports.rules.${ruleIndex}.ports`, message: parsed.error }])
    const policyIndex = policies.length + 1 // 0 in a table means "the default"
    policies.push({ mode: rule.mode, reply: rule.reply, mirrorPort: rule.mirrorPort ?? null, proxy: rule.proxy ?? null })
    for (const range of parsed.ranges) {
      for (const protocol of range.protocols) {
        const key = `${protocol}:${range.from}-${range.to}`
        const earlier = seen.get(key)
        if (earlier !== undefined) {
          const message = `covers the same ports as ports.rules.${earlier} (${key}); merge them or remove one`
          throw new ConfigError(`ports.rules.${ruleIndex}: ${message}`, [{ path: `ports.rules.${ruleIndex}.ports`, message }])
        }
        seen.set(key, ruleIndex)
        entries.push({ protocol, from: range.from, to: range.to, policyIndex })
      }
    }
  })

  // Paint wide ranges first so narrower ones overwrite them (a stable sort: of two partly overlapping ranges of the
  // same width, the later rule wins).
  entries.sort((a, b) => b.to - b.from - (a.to - a.from))
  for (const e of entries) tables[e.protocol].fill(e.policyIndex, e.from, e.to + 1)
  if (excluded.length > 0) {
    policies.push({ mode: 'ignore', reply: 'auto', mirrorPort: null, proxy: null })
    for (const range of excluded) for (const protocol of range.protocols) tables[protocol].fill(policies.length, range.from, range.to + 1)
  }

  const defaults: Record<Protocol, RulePolicy> = {
    tcp: { mode: ports.defaultMode, reply: 'auto', mirrorPort: null, proxy: ports.defaultProxy.tcp ?? null },
    udp: { mode: ports.defaultMode, reply: 'auto', mirrorPort: null, proxy: ports.defaultProxy.udp ?? null },
  }
  // One frozen object per (rule, reply timing), made on first use, so resolve() allocates nothing on the SYN path.
  const cache = new Map<RulePolicy, { banner?: PortPolicy; 'on-data'?: PortPolicy; silence?: PortPolicy }>()
  const withTiming = (rule: RulePolicy, port: number): PortPolicy => {
    const timing = rule.reply === 'auto' ? (banner.has(port) ? 'banner' : 'on-data') : rule.reply
    let byTiming = cache.get(rule)
    if (byTiming === undefined) {
      byTiming = {}
      cache.set(rule, byTiming)
    }
    return (byTiming[timing] ??= Object.freeze({ mode: rule.mode, reply: timing, mirrorPort: rule.mirrorPort, proxy: rule.proxy }))
  }

  return {
    resolve(protocol: Protocol, port: number): PortPolicy {
      const index = tables[protocol][port] ?? 0
      return withTiming(index === 0 ? defaults[protocol] : policies[index - 1]!, port)
    },
  }
}
