import { performance } from 'node:perf_hooks'
import pino, { type Logger } from 'pino'
import { shippedTemplatesDir } from './config/paths.js'
import { parsePortSpec, type PortRange } from './config/port-spec.js'
import type { Config } from './config/schema.js'
import { EbpfSource } from './monitor/ebpf/ebpf-source.js'
import { NfqueueSource } from './monitor/nfqueue-source.js'
import type { PacketSource } from './monitor/packet-source.js'
import { PcapSource } from './monitor/pcap-source.js'
import { startPipeline, type PipelineHandle } from './plugins/pipeline-launcher.js'
import { pipelineSettings } from './plugins/pipeline-settings.js'
import { createResponders, type ResponderSet } from './responders/responder-set.js'
import { TemplateStore } from './responders/templates.js'
import { installRules, removeRules, type InstallReport } from './rules/iptables-runner.js'
import { sshExcludeRanges, type RuleOptions } from './rules/iptables-rules.js'
import { detectSshPorts } from './rules/ssh-ports.js'
import { createSqliteStore } from './store/sqlite-store.js'
import type { AttackStore } from './store/store.js'
import { raiseFdLimit } from './supervisor/fd-limit.js'
import { buildPortPolicy } from './supervisor/port-policy.js'
import { SourceLimiter } from './supervisor/source-limiter.js'
import { Supervisor, type AttackSink } from './supervisor/supervisor.js'

// Log output is buffered: one write per 4 KiB instead of one per line (a line per stored attack adds up on a hot
// port), flushed at least every 500 ms and synchronously at exit. A stdout reader that stalls must not stall the
// sensor nor grow its memory: past 16 MiB waiting, lines are dropped, and the drop is counted.
const LOG_MIN_WRITE_BYTES = 4 * 1024
const LOG_MAX_BUFFER_BYTES = 16 * 1024 * 1024
const LOG_FLUSH_INTERVAL_MS = 500
// How often the sensor tells its plugin pipeline how busy it is (plugins.pauseAboveLoad).
const LOAD_SAMPLE_MS = 250

/** The one root logger: NDJSON on stdout, UTC RFC 3339 timestamps. */
export function createRootLogger(level: string): Logger {
  const destination = pino.destination({ dest: 1, sync: false, minLength: LOG_MIN_WRITE_BYTES, maxLength: LOG_MAX_BUFFER_BYTES })
  let dropped = 0
  destination.on('drop', () => dropped++)
  const log = pino({ level, timestamp: pino.stdTimeFunctions.isoTime, base: { pid: process.pid } }, destination)
  setInterval(() => {
    if (dropped > 0) {
      log.warn({ droppedLines: dropped }, 'log output stalled, lines dropped')
      dropped = 0
    }
    destination.flush()
  }, LOG_FLUSH_INTERVAL_MS).unref()
  process.on('exit', () => {
    try {
      destination.flushSync()
    } catch {
      // stdout already gone: nothing left to save
    }
  })
  return log
}

/** A running sensor. */
export interface Sensor {
  readonly supervisor: Supervisor
  readonly monitor: PacketSource
  readonly store: AttackStore
  readonly templates: TemplateStore
  readonly responders: ResponderSet
  readonly pipeline: PipelineHandle | null // null when plugins.enabled is false
  /** Stops taking attempts, ends every session, stores everything and removes the rules it added. Idempotent. */
  stop(): Promise<void>
}

/** Every excluded range: the config's list plus the ports sshd listens on, so the operator is never locked out. */
export async function resolveExcludes(config: Config): Promise<PortRange[]> {
  const ranges: PortRange[] = []
  for (const item of config.rules.exclude) {
    const parsed = parsePortSpec(item)
    if (parsed.ok) ranges.push(...parsed.ranges) // the schema already refused anything else
  }
  ranges.push(...sshExcludeRanges(await detectSshPorts()))
  return ranges
}

/** The capture rules' options from a config and the resolved exclusions: what `run`, `iptables` and the benchmark install. */
export function ruleOptionsFor(config: Config, excluded: readonly PortRange[]): RuleOptions {
  return {
    queue: config.monitor.queue,
    queueCount: config.monitor.queues,
    exclude: excluded,
    interface: config.rules.interface,
    ipv6: config.rules.ipv6,
    includeLoopback: config.rules.includeLoopback,
    mark: config.rules.mark,
    skipQueueForServedPorts: config.rules.skipQueueForServedPorts,
  }
}

/** The packet source `monitor.type` names. None opens anything before start(). */
function createMonitor(config: Config, deps: { readonly excluded: readonly PortRange[]; readonly supervisor: Supervisor; readonly log: Logger }): PacketSource {
  const { excluded, log } = deps
  if (config.monitor.type === 'ebpf') {
    const policy = buildPortPolicy(config.ports, config.responder.bannerPorts, excluded)
    return new EbpfSource({
      target: deps.supervisor,
      isIgnored: (protocol, port) => policy.resolve(protocol, port).mode === 'ignore',
      includeLoopback: config.rules.includeLoopback,
      serviceScanMs: config.monitor.ebpf.serviceScanMs,
      interfaces: config.monitor.ebpf.interfaces,
      log,
    })
  }
  if (config.monitor.type === 'pcap') {
    const pcap = config.monitor.pcap
    return new PcapSource({ interface: pcap.interface, exclude: excluded, bufferBytes: pcap.bufferBytes, snapLength: pcap.snapLength, log })
  }
  return new NfqueueSource({
    queue: config.monitor.queue,
    queues: config.monitor.queues,
    bufferBytes: config.monitor.queueBufferBytes,
    maxHoldMs: config.monitor.maxHoldMs,
    mark: config.rules.mark,
    serves: (attempt) => deps.supervisor.hasListener(attempt.family, attempt.protocol, attempt.dstPort),
    skipQueue: config.rules.skipQueueForServedPorts ? deps.supervisor : null,
    log,
  })
}

/** The supervisor and its responders, wired from the config (also by the tests, so they run what the sensor runs). */
export function createSupervisor(
  config: Config,
  deps: { readonly templates: TemplateStore; readonly limiter: SourceLimiter; readonly excluded: readonly PortRange[]; readonly sink: AttackSink; readonly log: Logger },
): { readonly supervisor: Supervisor; readonly responders: ResponderSet } {
  const responders = createResponders(config, deps.templates)
  const supervisor = new Supervisor({
    listeners: config.listeners,
    maxAttackBytes: config.responder.maxAttackBytes,
    maxTranscriptChunks: config.responder.maxTranscriptChunks,
    maxSessionMs: config.responder.maxDurationMs,
    udpSessionIdleMs: config.udp.sessionIdleMs,
    policy: buildPortPolicy(config.ports, config.responder.bannerPorts, deps.excluded),
    limiter: deps.limiter,
    responders: responders.tcp,
    datagramResponders: responders.udp,
    sink: deps.sink,
    log: deps.log,
  })
  return { supervisor, responders }
}

/**
 * Composition root: config -> logger -> components -> signals. The only place that wires the stages together.
 * Start-up order puts the rules last, so no attempt is queued before the monitor and its listeners are ready.
 */
export async function startSensor(config: Config, log: Logger): Promise<Sensor> {
  const fdLimit = await raiseFdLimit()
  const limits = { ...config.limits }
  if (fdLimit !== null) {
    // Each relay holds a second descriptor (its target connection), bounded by the mirror and proxy caps.
    const relays = config.mirror.maxConcurrent + Object.values(config.proxy.targets).reduce((n, t) => n + t.maxConcurrent, 0)
    const room = fdLimit.soft - config.listeners.maxListeners - relays - 256 // 256: the db, logs, netlink, templates
    if (room < limits.maxConnections) {
      log.warn({ fdSoft: fdLimit.soft, fdHard: fdLimit.hard, maxConnections: limits.maxConnections, lowered: Math.max(room, 64) }, 'file descriptor limit lowers maxConnections')
      limits.maxConnections = Math.max(room, 64)
    }
  }
  log.info({ fdSoft: fdLimit?.soft, fdHard: fdLimit?.hard, maxListeners: config.listeners.maxListeners, maxConnections: limits.maxConnections }, 'limits')

  const templates = new TemplateStore({
    dir: config.responder.templatesDir ?? shippedTemplatesDir(),
    maxTemplateBytes: config.responder.maxTemplateBytes,
    log,
  })
  await templates.load()

  const store = await createSqliteStore({
    path: config.store.path,
    batchWindowMs: config.store.batchWindowMs,
    batchMaxAttacks: config.store.batchMaxAttacks,
    maxQueuedAttacks: config.store.maxQueuedAttacks,
    maxQueuedBytes: config.store.maxQueuedBytes,
    log,
  })

  // The plugins run in their own low-priority process, following the database; a plugin that cannot be loaded stops
  // the start here, before any rule is installed.
  const plugins = pipelineSettings(config)
  let pipeline: PipelineHandle | null = null
  if (config.plugins.enabled) {
    try {
      pipeline = await startPipeline(plugins, log)
    } catch (err) {
      await store.close()
      templates.close()
      throw err
    }
  }

  const excluded = await resolveExcludes(config)
  const { supervisor, responders } = createSupervisor(config, {
    templates,
    limiter: new SourceLimiter(limits),
    excluded,
    sink: (attack) => store.enqueue(attack),
    log,
  })

  const monitor = createMonitor(config, { excluded, supervisor, log })
  // The one teardown, in data-flow order: no new attempts, sessions ended and recorded, everything stored.
  const teardown = async (): Promise<void> => {
    await monitor.stop()
    // The pipeline stops alongside: what it has not reached yet waits in the database for its next start.
    await Promise.all([pipeline?.stop(), supervisor.close()])
    responders.close()
    await store.close()
    templates.close()
  }
  try {
    await monitor.start(supervisor.onAttempt)
  } catch (err) {
    await teardown()
    throw err
  }

  const ruleOptions = ruleOptionsFor(config, excluded)
  let rules: InstallReport | null = null
  // Only the NFQUEUE monitor needs capture rules; a pcap capture sees traffic as it is.
  if (config.rules.manage && config.monitor.type === 'nfqueue') {
    try {
      rules = await installRules(ruleOptions, { log })
    } catch (err) {
      await teardown()
      throw err
    }
  }

  // Loaded only when scheduled: a sensor without upkeep carries no cron library in its heap (the idle RSS budget).
  const upkeepConfig = config.store.upkeep
  const upkeep =
    upkeepConfig.schedule === null
      ? null
      : (await import('./store/upkeep-scheduler.js')).startUpkeep({
          schedule: upkeepConfig.schedule,
          olderThan: upkeepConfig.olderThan,
          vacuum: upkeepConfig.vacuum,
          dbPath: config.store.path,
          quarantineDir: plugins.quarantineDir,
          log,
        })

  // Capture comes first: the sensor tells the pipeline how busy its event loop is, and the pipeline pauses under load.
  let lastLoad = performance.eventLoopUtilization()
  const loadTimer =
    pipeline === null
      ? undefined
      : setInterval(() => {
          const now = performance.eventLoopUtilization()
          pipeline?.setLoad(performance.eventLoopUtilization(now, lastLoad).utilization)
          lastLoad = now
        }, LOAD_SAMPLE_MS).unref()

  let stopping: Promise<void> | null = null
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      clearInterval(loadTimer)
      upkeep?.stop()
      // Rules first: from here on new attempts go straight to the kernel instead of waiting in the queue.
      if (rules !== null) {
        await removeRules({ ipv6: ruleOptions.ipv6, only: rules }, { log }).catch((err: unknown) => log.error({ err }, 'removing capture rules failed'))
      }
      await teardown()
      log.info({ store: store.stats(), supervisor: supervisor.stats(), monitor: monitor.stats(), relay: responders.relayStats.snapshot(), warm: responders.warmStats(), pipeline: pipeline?.stats() ?? null }, 'sensor stopped')
    })()
    return stopping
  }

  log.info(
    {
      monitor: config.monitor.type,
      ...(config.monitor.type === 'nfqueue' && { queue: config.monitor.queue }),
      ...(config.monitor.type === 'pcap' && { interface: config.monitor.pcap.interface }),
      db: config.store.path,
      templates: templates.size,
      rules: rules !== null,
    },
    'sensor started',
  )
  return { supervisor, monitor, store, templates, responders, pipeline, stop }
}
