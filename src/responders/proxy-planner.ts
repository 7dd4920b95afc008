import type { Endpoint, Protocol } from '../attack/attack.js'
import type { PortPolicy } from '../supervisor/port-policy.js'
import { formatEndpoint } from '../core/format-endpoint.js'
import type { RelayPlan, RelayPlanner } from './relay-plan.js'
import type { TargetResolver } from './target-resolver.js'
import type { WarmUpstream } from './warm-upstream.js'

export interface ProxyTargetConfig {
  readonly host: string
  readonly port: number
  readonly protocol: Protocol
  readonly maxConcurrent: number
}

export interface ProxyPlannerOptions {
  readonly targets: Readonly<Record<string, ProxyTargetConfig>>
  readonly resolver: TargetResolver
  readonly warm?: ReadonlyMap<string, WarmUpstream> // by target name: connections opened ahead, for targets that want them
}

/**
 * Proxy mode's gatekeeper. The destination is looked up by the name in the port's policy and nothing else: no byte
 * from the attacker can steer it. Each target has a concurrency cap; the slot is taken before the name is resolved,
 * so a burst cannot overshoot the cap while lookups are in flight.
 */
export function createProxyPlanner(options: ProxyPlannerOptions): RelayPlanner {
  const active = new Map<string, number>()
  const { resolver } = options

  function granted(name: string, target: ProxyTargetConfig, resolved: { address: string } | null, release: () => void): RelayPlan {
    if (resolved === null) {
      release()
      return { ok: false, reason: 'resolve-failed', label: formatEndpoint(target.host, target.port) }
    }
    const destination: Endpoint = { address: resolved.address, port: target.port }
    const warm = options.warm?.get(name)
    const label = formatEndpoint(destination.address, destination.port)
    return { ok: true, lease: { destination, label, spend: null, release, ...(warm !== undefined && { takeWarm: () => warm.take(destination) }) } }
  }

  return {
    mode: 'proxy',
    plan(protocol: Protocol, _source: Endpoint, _target: Endpoint, policy: PortPolicy): RelayPlan | Promise<RelayPlan> {
      const name = policy.proxy
      const target = name === null ? undefined : options.targets[name]
      // The config check makes both impossible; if they happen anyway, fail safe into normal mode.
      if (name === null || target === undefined || target.protocol !== protocol) return { ok: false, reason: 'connect-failed', label: name ?? '(no target)' }
      const count = active.get(name) ?? 0
      if (count >= target.maxConcurrent) return { ok: false, reason: 'target-busy', label: formatEndpoint(target.host, target.port) }
      active.set(name, count + 1)
      let released = false
      const release = (): void => {
        if (released) return
        released = true
        const left = (active.get(name) ?? 1) - 1
        if (left <= 0) active.delete(name)
        else active.set(name, left)
      }
      const resolved = resolver.resolve(target.host)
      if (resolved instanceof Promise) return resolved.then((r) => granted(name, target, r, release))
      return granted(name, target, resolved, release)
    },
  }
}
