import type { z } from 'zod'
import type { Protocol } from '../attack/attack.js'
import { parsePortSpec } from './port-spec.js'

/** The parts of the config that the relay checks read (the schema's output before these checks). */
interface RelayConfigShape {
  readonly ports: {
    readonly defaultMode: string
    readonly defaultProxy: { readonly tcp?: string | undefined; readonly udp?: string | undefined }
    readonly rules: ReadonlyArray<{ readonly ports: string | number; readonly mode: string; readonly mirrorPort?: number | undefined; readonly proxy?: string | undefined }>
  }
  readonly proxy: { readonly targets: Readonly<Record<string, { readonly protocol: Protocol }>> }
}

/**
 * Cross-section checks the per-key schema cannot make: every proxy rule names a defined target of the same protocol
 * as each port it covers (TCP is relayed to TCP, UDP to UDP; a mismatched pair would have nothing sensible to do at
 * run time), and the mode-specific keys appear only with their mode, so a rule never silently means something else.
 */
export function checkRelayTargets(config: RelayConfigShape, ctx: z.RefinementCtx): void {
  const targets = config.proxy.targets
  const defined = Object.keys(targets)
  const known = defined.length === 0 ? 'no targets are defined under proxy.targets' : `defined targets: ${defined.join(', ')}`
  const checkTarget = (name: string, protocols: readonly Protocol[], path: (string | number)[], what: string): void => {
    const target = targets[name]
    if (target === undefined) {
      ctx.addIssue({ code: 'custom', path, message: `proxy target "${name}" is not defined (${known}); add it under proxy.targets` })
      return
    }
    const other = protocols.find((p) => p !== target.protocol)
    if (other !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path,
        message: `${what} covers ${other} but proxy target "${name}" is ${target.protocol}; a proxy relays tcp to tcp and udp to udp: add "/${target.protocol}" to the ports or name a ${other} target`,
      })
    }
  }

  config.ports.rules.forEach((rule, index) => {
    const base = ['ports', 'rules', index]
    if (rule.mode !== 'mirror' && rule.mirrorPort !== undefined) {
      ctx.addIssue({ code: 'custom', path: [...base, 'mirrorPort'], message: `mirrorPort applies to mode mirror only, and this rule is mode ${rule.mode}; remove it or set mode: mirror` })
    }
    if (rule.mode !== 'proxy' && rule.proxy !== undefined) {
      ctx.addIssue({ code: 'custom', path: [...base, 'proxy'], message: `proxy applies to mode proxy only, and this rule is mode ${rule.mode}; remove it or set mode: proxy` })
    }
    if (rule.mode !== 'proxy') return
    if (rule.proxy === undefined) {
      ctx.addIssue({ code: 'custom', path: [...base, 'proxy'], message: `a proxy rule needs the name of its target (proxy: <name>); ${known}` })
      return
    }
    const parsed = parsePortSpec(rule.ports)
    if (!parsed.ok) return // the ports key reports its own error
    const protocols = [...new Set(parsed.ranges.flatMap((r) => r.protocols))]
    checkTarget(rule.proxy, protocols, [...base, 'proxy'], `ports.rules.${index}.ports ("${String(rule.ports)}")`)
  })

  const { defaultProxy } = config.ports
  for (const protocol of ['tcp', 'udp'] as const) {
    const name = defaultProxy[protocol]
    const path = ['ports', 'defaultProxy', protocol]
    if (name !== undefined) checkTarget(name, [protocol], path, `ports.defaultProxy.${protocol}`)
    else if (config.ports.defaultMode === 'proxy') {
      ctx.addIssue({
        code: 'custom',
        path,
        message: `defaultMode proxy needs a ${protocol} target for the ports no rule covers (both protocols are captured); set ports.defaultProxy.${protocol}`,
      })
    }
  }
}
