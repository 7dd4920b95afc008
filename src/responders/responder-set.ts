import type { ResponderMode } from '../attack/attack.js'
import { parseCidr, type CidrRange } from '../config/cidr.js'
import type { Config } from '../config/schema.js'
import { AddressGuard } from './address-guard.js'
import { MirrorBudget } from './mirror-budget.js'
import { createMirrorPlanner } from './mirror-planner.js'
import { createNormalDatagramResponder } from './normal-datagram.js'
import { createNormalResponder } from './normal.js'
import { createProxyPlanner } from './proxy-planner.js'
import { createRelayDatagramResponder } from './relay-datagram.js'
import { RelayStats } from './relay-stats.js'
import { createRelayResponder } from './relay.js'
import type { DatagramResponder, Responder } from './responder.js'
import { TargetResolver } from './target-resolver.js'
import type { TemplateStore } from './templates.js'
import { WarmUpstream, type WarmUpstreamStats } from './warm-upstream.js'

/** The modes that have a responder; `ignore` ports are never bound. */
export type ServedMode = Exclude<ResponderMode, 'ignore'>

/** Every responder of a sensor, by mode and protocol, with the state they share. */
export interface ResponderSet {
  readonly tcp: Readonly<Record<ServedMode, Responder>>
  readonly udp: Readonly<Record<ServedMode, DatagramResponder>>
  readonly relayStats: RelayStats
  readonly mirrorBudget: MirrorBudget
  readonly resolver: TargetResolver
  /** Proxy targets' warm connections, by target name (only targets with `warm` > 0). */
  warmStats(): Record<string, WarmUpstreamStats>
  /** Closes what the responders hold open outside sessions (warm connections). */
  close(): void
}

type ResponderConfig = Pick<Config, 'responder' | 'udp' | 'mirror' | 'proxy' | 'relay'>

/** Builds the responders from their config slices; the normal ones also serve relays that fall back. */
export function createResponders(config: ResponderConfig, templates: TemplateStore): ResponderSet {
  const normal = createNormalResponder({ templates, idleTimeoutMs: config.responder.idleTimeoutMs, silence: config.responder.silence })
  const normalDatagram = createNormalDatagramResponder({ templates, maxReplyRatio: config.udp.maxReplyRatio })
  const relayStats = new RelayStats()

  const deny: CidrRange[] = []
  for (const text of config.mirror.deny) {
    const parsed = parseCidr(text)
    if (parsed.ok) deny.push(parsed.range) // the schema refused anything else
  }
  const mirrorBudget = new MirrorBudget(config.mirror)
  const mirror = createMirrorPlanner({ guard: new AddressGuard({ deny }), budget: mirrorBudget })
  const resolver = new TargetResolver({ ttlMs: config.proxy.resolveTtlMs, timeoutMs: config.proxy.connectTimeoutMs })
  const warm = new Map<string, WarmUpstream>()
  for (const [name, target] of Object.entries(config.proxy.targets)) {
    if (target.protocol !== 'tcp' || target.warm === 0) continue
    warm.set(name, new WarmUpstream({
      host: target.host,
      port: target.port,
      size: target.warm,
      maxAgeMs: target.warmMaxAgeMs,
      connectTimeoutMs: config.proxy.connectTimeoutMs,
      resolve: (host) => resolver.resolve(host),
    }))
  }
  const proxy = createProxyPlanner({ targets: config.proxy.targets, resolver, warm })

  const hwm = config.relay.highWaterMarkBytes
  const tcpRelay = (planner: typeof mirror, connectTimeoutMs: number, idleTimeoutMs: number): Responder =>
    createRelayResponder({ planner, fallback: normal, stats: relayStats, connectTimeoutMs, idleTimeoutMs, highWaterMarkBytes: hwm })
  const udpRelay = (planner: typeof mirror): DatagramResponder =>
    createRelayDatagramResponder({ planner, fallback: normalDatagram, stats: relayStats, maxReplyRatio: config.udp.maxReplyRatio })

  return {
    tcp: {
      normal,
      mirror: tcpRelay(mirror, config.mirror.connectTimeoutMs, config.mirror.idleTimeoutMs),
      proxy: tcpRelay(proxy, config.proxy.connectTimeoutMs, config.proxy.idleTimeoutMs),
    },
    udp: { normal: normalDatagram, mirror: udpRelay(mirror), proxy: udpRelay(proxy) },
    relayStats,
    mirrorBudget,
    resolver,
    warmStats: () => Object.fromEntries([...warm].map(([name, pool]) => [name, pool.stats()])),
    close: () => {
      for (const pool of warm.values()) pool.close()
    },
  }
}
