import cron from 'node-cron'
import { z } from 'zod'
import { Cidr, Port, PositiveInt } from './common-schemas.js'
import { parsePortSpec } from './port-spec.js'
import { checkPluginList, PluginsSection } from './plugins-section.js'
import { checkRelayTargets } from './relay-targets.js'

/** The one config schema. Defaults live here, each with its unit; `honeytrap.example.yaml` documents every key. */

/** A port list in the port-spec syntax ("22/tcp", "80,443", "8000-8100/udp"); a bare number is one port. */
const PortList = z.union([z.string(), Port]).superRefine((value, ctx) => {
  const result = parsePortSpec(value)
  if (!result.ok) ctx.addIssue({ code: 'custom', message: result.error })
})

export const RESPONDER_MODES = ['normal', 'ignore', 'mirror', 'proxy'] as const

const Mode = z.enum(RESPONDER_MODES)


/** The name of a proxy target: a key of `proxy.targets`. */
const TargetName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'a target name is 1-64 letters, digits, ".", "_" or "-"')

/**
 * When a normal-mode responder sends its template:
 * - banner: at once on connect (server-speaks-first protocols: FTP, SMTP, MySQL, VNC, ...)
 * - on-data: at once when the first bytes arrive (HTTP, SMB, RDP, ...)
 * - silence: the original honeytrap's way: after each `silence.intervalMs` of client silence, up to `silence.maxReplies`
 * - auto: banner for the ports in `responder.bannerPorts`, on-data for the others
 */
export const REPLY_TIMINGS = ['auto', 'banner', 'on-data', 'silence'] as const
export type ReplyTiming = (typeof REPLY_TIMINGS)[number]

const PortRule = z.strictObject({
  ports: PortList, // which ports (and protocols) this rule covers
  mode: Mode,
  reply: z.enum(REPLY_TIMINGS).default('auto'), // normal mode, and mirror/proxy sessions that fall back to it
  mirrorPort: Port.optional(), // mirror: connect back to this port instead of the attacked one
  proxy: TargetName.optional(), // proxy: the target (a key of proxy.targets) these ports are relayed to
})

const ProxyTarget = z.strictObject({
  host: z.string().min(1).max(253), // an address or a host name (resolved with a cache, see proxy.resolveTtlMs)
  port: Port,
  protocol: z.enum(['tcp', 'udp']),
  maxConcurrent: PositiveInt.default(64), // sessions relayed to this target at once; more fall back to normal mode
  // TCP only: connections opened ahead of the attackers, each serving one session without a connect (the banner waits
  // in it). The target sees them as connections that stay silent and are closed unused after warmMaxAgeMs.
  warm: z.number().int().min(0).max(32).default(0),
  warmMaxAgeMs: z.number().int().min(500).max(600_000).default(5_000),
}).refine((t) => t.protocol === 'tcp' || t.warm === 0, { message: 'warm connections are for tcp targets only; remove warm or set it to 0', path: ['warm'] })

export const ConfigSchema = z.strictObject({
  monitor: z
    .strictObject({
      // nfqueue: an iptables NFQUEUE rule holds each new SYN until its port is bound (no attempt lost). ebpf: a BPF
      // sk_lookup program steers every port into the sensor's own sockets (no rules, no queue, no per-port bind for
      // TCP; needs `npm run build:native` and Linux >= 5.18). pcap: a libpcap capture, for hosts with neither; it only
      // observes, so the first attempt at each new port is lost.
      type: z.enum(['nfqueue', 'ebpf', 'pcap']).default('nfqueue'),
      queue: z.number().int().min(0).max(65_535).default(0), // first NFQUEUE number, as in the rules
      // Queues queue .. queue + queues - 1, flows balanced over them: each is read through its own socket, so a busy
      // event loop still takes several SYNs per turn, and the kernel holds queues × 1,024 of them before dropping.
      queues: z.number().int().min(1).max(16).default(4),
      queueBufferBytes: PositiveInt.default(8 * 1024 * 1024), // netlink receive buffer: absorbs SYN bursts
      maxHoldMs: PositiveInt.default(2_000), // a SYN held for a bind is accepted after this, bound or not
      ebpf: z
        .strictObject({
          // How often the ports real services listen on are read again (and left to them); a service that starts
          // listening is steered to the sensor until the next read.
          serviceScanMs: PositiveInt.min(100).max(60_000).default(1_000),
          // Interfaces whose SYNs the SYN-facts program (tc or XDP) reports (header facts for the records); null: every interface
          // present at start but lo (lo too with rules.includeLoopback).
          interfaces: z.array(z.string().regex(/^[A-Za-z0-9_.:+-]{1,15}$/, 'an interface name such as eth0')).max(64).nullable().default(null),
        })
        .prefault({}),
      pcap: z
        .strictObject({
          // A device (eth0) or 'any' (every interface); rules.interface does not apply: no rules are installed.
          interface: z.string().regex(/^(?:any|[A-Za-z0-9_.:+-]{1,15})$/, 'an interface name such as eth0, or any').default('any'),
          bufferBytes: PositiveInt.min(65_536).default(8 * 1024 * 1024), // the kernel capture buffer: absorbs SYN bursts
          snapLength: z.number().int().min(96).max(65_535).default(256), // bytes of each frame read: the headers
        })
        .prefault({}),
    })
    .refine((m) => m.queue + m.queues - 1 <= 65_535, { message: 'queue + queues - 1 must not pass 65535', path: ['queues'] })
    .prefault({}),

  rules: z
    .strictObject({
      manage: z.boolean().default(true), // `run` installs the capture rules at start and removes what it added at exit
      exclude: z.array(PortList).default([]), // never queued (in addition to the detected sshd ports, always excluded)
      interface: z.string().regex(/^[A-Za-z0-9_.:+-]{1,15}$/, 'an interface name such as eth0').nullable().default(null),
      ipv6: z.boolean().default(true),
      includeLoopback: z.boolean().default(false), // trap connections over lo too (off: local services stay untouched)
      // The packet-mark bit(s) the sensor sets on the attempts it serves, so that filter/INPUT accepts them ahead of the
      // host's own rules; everything else meets those rules. One bit no other tool on the host uses (0x400000: bit 22).
      mark: z.number().int().min(1).max(0xffff_ffff).default(0x0040_0000),
      // SYNs to a port the sensor already listens on skip the queue; their facts come from the copy of the SYN the
      // kernel saves with each connection (TCP_SAVE_SYN). Needs xt_socket, and the socket addon to mark the listeners
      // (without it every SYN is queued as before). On by default: a busy port's SYNs no longer wait for the sensor.
      skipQueueForServedPorts: z.boolean().default(true),
    })
    .prefault({}),

  listeners: z
    .strictObject({
      idleLifetimeMs: PositiveInt.default(120_000), // a listener with no new connection for this long is closed
      maxListeners: PositiveInt.max(65_535 * 4).default(4_096), // beyond it, the least recently used idle listener makes room
      ownedPortRecheckMs: PositiveInt.default(10_000), // a port found owned by a real service is not re-tried for this long
      backlog: PositiveInt.max(65_535).default(511),
    })
    .prefault({}),

  limits: z
    .strictObject({
      maxConnections: PositiveInt.default(20_000), // concurrent TCP connections + UDP sessions, all sources
      maxConnectionsPerSource: PositiveInt.default(512), // concurrent, per source address
      newConnectionsPerSecondPerSource: PositiveInt.default(5_000), // per source address, 1 s window
      maxTrackedSources: PositiveInt.default(100_000), // sources remembered for the limits above (bounded memory)
    })
    .prefault({}),

  responder: z
    .strictObject({
      templatesDir: z.string().min(1).nullable().default(null), // null: the templates shipped with honeytrap-ts
      maxTemplateBytes: PositiveInt.max(16 * 1024 * 1024).default(64 * 1024),
      idleTimeoutMs: PositiveInt.default(30_000), // silence from the attacker that ends a session
      maxDurationMs: PositiveInt.default(300_000), // hard cap on one session
      maxAttackBytes: PositiveInt.max(256 * 1024 * 1024).default(1024 * 1024), // the read limit: bytes kept per session and direction
      maxTranscriptChunks: PositiveInt.max(1_000_000).default(10_000), // transcript entries kept per session
      bannerPorts: z.array(Port).default([21, 22, 23, 25, 110, 143, 465, 587, 993, 995, 2323, 3306, 4444, 5900, 21000]),
      silence: z
        .strictObject({
          intervalMs: PositiveInt.default(1_000), // client silence before each reply
          maxReplies: PositiveInt.max(1_000).default(10), // then the session closes (replies-done)
        })
        .prefault({}),
    })
    .prefault({}),

  udp: z
    .strictObject({
      sessionIdleMs: PositiveInt.default(10_000), // a UDP session (one peer address+port) ends after this silence
      maxReplyRatio: z.number().min(0).max(100).default(3), // bytes sent ≤ ratio × bytes received: no amplification
    })
    .prefault({}),

  ports: z
    .strictObject({
      defaultMode: Mode.default('normal'),
      // With defaultMode proxy: the targets of the ports no rule covers, one per protocol.
      defaultProxy: z.strictObject({ tcp: TargetName.optional(), udp: TargetName.optional() }).prefault({}),
      rules: z.array(PortRule).default([]),
    })
    .prefault({}),

  // Mirror mode sends attackers their own traffic. Safe by default: it never connects to the sensor's own or special
  // addresses nor to `deny`, never loops with another sensor, and spends a small budget per source.
  mirror: z
    .strictObject({
      connectTimeoutMs: PositiveInt.max(60_000).default(3_000),
      idleTimeoutMs: PositiveInt.default(30_000), // no bytes either way for this long ends a relayed session
      deny: z.array(Cidr).default([]), // never mirrored to: other sensors, the operator's networks
      maxConcurrent: PositiveInt.default(512), // mirrors open at once, all sources (each holds a second descriptor)
      maxConcurrentPerSource: PositiveInt.default(4), // mirror connections open to one address at once
      connectionsPerMinutePerSource: PositiveInt.default(30), // mirror connections started per address and minute
      bytesPerMinutePerSource: PositiveInt.default(1024 * 1024), // bytes sent to one address per minute, both legs
      maxTrackedSources: PositiveInt.default(10_000), // addresses whose budgets are remembered (bounded memory)
    })
    .prefault({}),

  // Proxy mode relays attackers to a real backend. Targets come from here only: no attacker input ever picks one.
  proxy: z
    .strictObject({
      connectTimeoutMs: PositiveInt.max(60_000).default(3_000),
      idleTimeoutMs: PositiveInt.default(120_000), // no bytes either way for this long ends a relayed session
      resolveTtlMs: PositiveInt.default(60_000), // how long a resolved host name is used before resolving again
      targets: z.record(TargetName, ProxyTarget).default({}),
    })
    .prefault({}),

  relay: z
    .strictObject({
      // Bytes buffered per direction before the faster side is paused: a slow peer slows its counterpart instead of
      // growing the sensor's memory.
      highWaterMarkBytes: PositiveInt.max(16 * 1024 * 1024).default(256 * 1024),
    })
    .prefault({}),

  store: z
    .strictObject({
      path: z.string().min(1).default('/var/lib/honeytrap-ts/attacks.db'),
      batchWindowMs: PositiveInt.max(10_000).default(200), // the most a SIGKILL can lose: attacks ended in this window
      batchMaxAttacks: PositiveInt.default(250), // smaller batches: a write holds the event loop for less time
      maxQueuedAttacks: PositiveInt.default(100_000), // past this the store drops (counted) instead of growing
      maxQueuedBytes: PositiveInt.default(256 * 1024 * 1024), // payload and response bytes of waiting attacks
      // Upkeep inside the running sensor: `db retention` (and `db vacuum`) on a cron schedule, in a low-priority child
      // process. Off by default: deleting attacks is the operator's decision.
      upkeep: z
        .strictObject({
          schedule: z
            .string()
            .refine((expression) => cron.validate(expression), 'not a cron expression; e.g. "30 3 * * *" (03:30 every day) or "0 4 * * 0" (Sundays 04:00)')
            .nullable()
            .default(null), // null: no scheduled upkeep
          olderThan: z.string().regex(/^[1-9]\d{0,4}[dh]$/, 'a number of days or hours, e.g. "90d" or "36h"').default('90d'), // attacks older than this are removed
          vacuum: z.boolean().default(false), // VACUUM afterwards: gives the space back, but locks the database while it runs
        })
        .prefault({}),
    })
    .prefault({}),

  // Post-processing: every stored attack goes through these plugins in a separate, low-priority process
  // (docs/plugins.md). Downloaders are off by default: fetching contacts the attacker's servers from the sensor's address.
  plugins: PluginsSection,

  log: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    })
    .prefault({}),
})
  .superRefine(checkRelayTargets)
  .superRefine(checkPluginList)
  .superRefine((config, ctx) => {
    // One session keeps up to maxAttackBytes in each direction; a queue bound below that would drop it every time.
    const least = 2 * config.responder.maxAttackBytes
    if (config.store.maxQueuedBytes < least) {
      ctx.addIssue({ code: 'custom', path: ['store', 'maxQueuedBytes'], message: `must be at least twice responder.maxAttackBytes (${least}): a session keeps up to maxAttackBytes in each direction` })
    }
  })

export type Config = z.infer<typeof ConfigSchema>
export type ConfigInput = z.input<typeof ConfigSchema>
export type PortRuleConfig = z.infer<typeof PortRule>
