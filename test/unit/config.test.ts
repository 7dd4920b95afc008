import { existsSync, readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse as parseYaml } from 'yaml'
import { describe, expect, it, onTestFinished } from 'vitest'
import { loadConfig, parseConfig } from '../../src/config/load-config.js'
import type { Config } from '../../src/config/schema.js'
import { ConfigError, HoneytrapError, type ConfigIssue } from '../../src/core/errors.js'

const EXAMPLE_PATH = fileURLToPath(new URL('../../honeytrap.example.yaml', import.meta.url))

/** Runs `fn`, which must throw a ConfigError, and returns it. */
function configErrorOf(fn: () => unknown): ConfigError {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    const configError = err as ConfigError
    expect(configError.code).toBe('HT_ERR_CONFIG_INVALID')
    return configError
  }
  throw new Error('expected a ConfigError, nothing was thrown')
}

/** Runs `fn`, which must throw a HoneytrapError, and returns its code. */
function errorCodeOf(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(HoneytrapError)
    return (err as HoneytrapError).code
  }
  throw new Error('expected a HoneytrapError, nothing was thrown')
}

function issueAt(issues: readonly ConfigIssue[], path: string): ConfigIssue {
  const issue = issues.find((i) => i.path === path)
  expect(issue, `an issue at ${path} in ${JSON.stringify(issues)}`).toBeDefined()
  return issue!
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ht-config-'))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

async function writeYaml(text: string): Promise<string> {
  const path = join(await tempDir(), 'honeytrap.yaml')
  await writeFile(path, text)
  return path
}

function isDeepFrozen(value: unknown, seen = new Set<unknown>()): boolean {
  if (value === null || typeof value !== 'object' || seen.has(value)) return true
  seen.add(value)
  if (!Object.isFrozen(value)) return false
  return Object.values(value).every((child) => isDeepFrozen(child, seen))
}

// The defaults as documented in the schema, spelled out here so a changed default is a deliberate, reviewed change.
const DEFAULTS: Config = {
  monitor: { type: 'nfqueue', queue: 0, queues: 4, queueBufferBytes: 8 * 1024 * 1024, maxHoldMs: 2_000, ebpf: { serviceScanMs: 1_000, interfaces: null }, pcap: { interface: 'any', bufferBytes: 8 * 1024 * 1024, snapLength: 256 } },
  rules: { manage: true, exclude: [], interface: null, ipv6: true, includeLoopback: false, mark: 0x40_0000, skipQueueForServedPorts: true },
  listeners: { idleLifetimeMs: 120_000, maxListeners: 4_096, ownedPortRecheckMs: 10_000, backlog: 511 },
  limits: { maxConnections: 20_000, maxConnectionsPerSource: 512, newConnectionsPerSecondPerSource: 5_000, maxTrackedSources: 100_000 },
  responder: {
    templatesDir: null,
    maxTemplateBytes: 64 * 1024,
    idleTimeoutMs: 30_000,
    maxDurationMs: 300_000,
    maxAttackBytes: 1024 * 1024,
    maxTranscriptChunks: 10_000,
    bannerPorts: [21, 22, 23, 25, 110, 143, 465, 587, 993, 995, 2323, 3306, 4444, 5900, 21000],
    silence: { intervalMs: 1_000, maxReplies: 10 },
  },
  udp: { sessionIdleMs: 10_000, maxReplyRatio: 3 },
  ports: { defaultMode: 'normal', defaultProxy: {}, rules: [] },
  mirror: {
    connectTimeoutMs: 3_000,
    idleTimeoutMs: 30_000,
    deny: [],
    maxConcurrent: 512,
    maxConcurrentPerSource: 4,
    connectionsPerMinutePerSource: 30,
    bytesPerMinutePerSource: 1024 * 1024,
    maxTrackedSources: 10_000,
  },
  proxy: { connectTimeoutMs: 3_000, idleTimeoutMs: 120_000, resolveTtlMs: 60_000, targets: {} },
  relay: { highWaterMarkBytes: 256 * 1024 },
  store: {
    path: '/var/lib/honeytrap-ts/attacks.db',
    batchWindowMs: 200,
    batchMaxAttacks: 250,
    maxQueuedAttacks: 100_000,
    maxQueuedBytes: 256 * 1024 * 1024,
    upkeep: { schedule: null, olderThan: '90d', vacuum: false },
  },
  plugins: {
    enabled: true,
    dataDir: null,
    dir: null,
    timeoutMs: 60_000,
    maxDepth: 3,
    maxSubjectsPerAttack: 32,
    maxSubjectBytes: 4 * 1024 * 1024,
    maxBacklog: 100_000,
    pollIntervalMs: 250,
    nice: 19,
    pauseAboveLoad: 0.5,
    maxMemoryMb: 512,
    downloads: { maxBytes: 16 * 1024 * 1024, timeoutMs: 30_000, maxRedirects: 5, allow: [], deny: [], recentUrlTtlMs: 3_600_000, quarantineDir: null },
    // The downloaders are not in the default list: they contact the attacker's servers (docs/plugins.md).
    list: ['b64Decode', 'deUnicode', 'xorDecode', 'vncDownload', 'fileType', 'fuzzyHash'].map((name) => ({ name, enabled: true, options: {} })),
  },
  log: { level: 'info' },
}

describe('defaults', () => {
  it('parseConfig({}) gives every default', () => {
    expect(parseConfig({})).toEqual(DEFAULTS)
  })

  it('an empty document (null) and undefined give the defaults too', () => {
    expect(parseConfig(null)).toEqual(DEFAULTS)
    expect(parseConfig(undefined)).toEqual(DEFAULTS)
  })

  it('loadConfig(undefined) gives the defaults without reading a file', () => {
    expect(loadConfig(undefined)).toEqual(DEFAULTS)
  })

  it('an empty section gets its defaults and a partial one keeps the other defaults', () => {
    const config = parseConfig({ responder: {}, udp: { maxReplyRatio: 1 } })
    expect(config.responder).toEqual(DEFAULTS.responder)
    expect(config.udp).toEqual({ sessionIdleMs: 10_000, maxReplyRatio: 1 })
    expect(config.responder.silence).toEqual({ intervalMs: 1_000, maxReplies: 10 })
  })

  it('the result is deep-frozen, arrays and nested sections included', () => {
    const config = parseConfig({ ports: { rules: [{ ports: '80', mode: 'normal' }] }, rules: { exclude: ['22/tcp'] } })
    expect(isDeepFrozen(config)).toBe(true)
    expect(Object.isFrozen(config.responder.bannerPorts)).toBe(true)
    expect(Object.isFrozen(config.ports.rules[0])).toBe(true)
    expect(() => {
      ;(config.responder.silence as { intervalMs: number }).intervalMs = 1
    }).toThrow(TypeError)
    expect(() => (config.responder.bannerPorts as number[]).push(1)).toThrow(TypeError)
    expect(config.responder.silence.intervalMs).toBe(1_000)
  })

  it('the defaults from loadConfig(undefined) are deep-frozen as well', () => {
    expect(isDeepFrozen(loadConfig(undefined))).toBe(true)
  })
})

describe('strict sections', () => {
  it('refuses a misspelt top-level section and names it', () => {
    const err = configErrorOf(() => parseConfig({ listners: { idleLifetimeMs: 1_000 } }))
    const issue = issueAt(err.issues, '(top level)')
    expect(issue.message).toContain('"listners"')
  })

  it('refuses a misspelt key inside a section, with the section as the path and the key in the message', () => {
    const err = configErrorOf(() => parseConfig({ responder: { idleTimeout: 5_000 } }))
    expect(err.issues).toHaveLength(1)
    const issue = issueAt(err.issues, 'responder')
    expect(issue.message).toContain('"idleTimeout"')
  })

  it.each([
    ['monitor', { monitor: { queu: 1 } }, 'queu'],
    ['rules', { rules: { excludes: [] } }, 'excludes'],
    ['listeners', { listeners: { maxListener: 3 } }, 'maxListener'],
    ['limits', { limits: { maxConnection: 3 } }, 'maxConnection'],
    ['responder.silence', { responder: { silence: { interval: 3 } } }, 'interval'],
    ['udp', { udp: { ratio: 3 } }, 'ratio'],
    ['ports', { ports: { default: 'normal' } }, 'default'],
    ['ports.rules.0', { ports: { rules: [{ ports: '80', mode: 'normal', timing: 'banner' }] } }, 'timing'],
    ['store', { store: { file: '/tmp/x.db' } }, 'file'],
    ['log', { log: { lvl: 'debug' } }, 'lvl'],
  ])('section %s is strict', (path, raw, key) => {
    const err = configErrorOf(() => parseConfig(raw))
    const issue = issueAt(err.issues, path)
    expect(issue.message).toContain(`"${key}"`)
  })

  it('reports every bad key at once, not only the first', () => {
    const err = configErrorOf(() => parseConfig({ monitor: { queue: -1 }, limits: { maxConnections: 0 }, log: { level: 'loud' } }))
    expect(err.issues.map((i) => i.path).sort()).toEqual(['limits.maxConnections', 'log.level', 'monitor.queue'])
  })
})

describe('types and ranges name the key path', () => {
  it.each([
    ['monitor.queue', { monitor: { queue: 70_000 } }],
    ['monitor.queue', { monitor: { queue: 1.5 } }],
    ['monitor.queue', { monitor: { queue: '1' } }],
    ['limits.maxConnections', { limits: { maxConnections: -1 } }],
    ['limits.maxConnections', { limits: { maxConnections: 0 } }],
    ['listeners.backlog', { listeners: { backlog: 70_000 } }],
    ['responder.maxAttackBytes', { responder: { maxAttackBytes: 256 * 1024 * 1024 + 1 } }],
    ['responder.silence.maxReplies', { responder: { silence: { maxReplies: 1_001 } } }],
    ['responder.bannerPorts.1', { responder: { bannerPorts: [21, 0] } }],
    ['udp.maxReplyRatio', { udp: { maxReplyRatio: 101 } }],
    ['udp.maxReplyRatio', { udp: { maxReplyRatio: -0.5 } }],
    ['rules.manage', { rules: { manage: 'yes' } }],
    ['rules.interface', { rules: { interface: 'eth0; rm -rf /' } }],
    ['rules.interface', { rules: { interface: 'a-very-long-interface-name' } }],
    ['rules.exclude.0', { rules: { exclude: ['22-'] } }],
    ['rules.mark', { rules: { mark: 0 } }],
    ['rules.mark', { rules: { mark: 0x1_0000_0000 } }],
    ['store.path', { store: { path: '' } }],
    ['store.batchWindowMs', { store: { batchWindowMs: 10_001 } }],
    ['log.level', { log: { level: 'verbose' } }],
    ['ports.rules.0.ports', { ports: { rules: [{ ports: '80-70', mode: 'normal' }] } }],
    ['ports.rules.0.ports', { ports: { rules: [{ ports: 70_000, mode: 'normal' }] } }],
    ['ports.rules.1.ports', { ports: { rules: [{ ports: '80', mode: 'normal' }, { ports: '', mode: 'normal' }] } }],
    ['ports.rules.0.mode', { ports: { rules: [{ ports: '80', mode: 'nromal' }] } }],
    ['ports.rules.0.reply', { ports: { rules: [{ ports: '80', mode: 'normal', reply: 'later' }] } }],
    ['ports.rules.0.mode', { ports: { rules: [{ ports: '80' }] } }],
    ['monitor', { monitor: 'nfqueue' }],
    ['ports.rules', { ports: { rules: { ports: '80', mode: 'normal' } } }],
  ])('%s', (path, raw) => {
    const err = configErrorOf(() => parseConfig(raw))
    issueAt(err.issues, path)
  })

  it('a bad port range says which item is wrong', () => {
    const err = configErrorOf(() => parseConfig({ ports: { rules: [{ ports: '22/tcp, 80-70', mode: 'normal' }] } }))
    expect(issueAt(err.issues, 'ports.rules.0.ports').message).toContain('"80-70"')
  })

  it('accepts a valid port rule in both spellings (string and number)', () => {
    const config = parseConfig({
      ports: { defaultMode: 'ignore', rules: [{ ports: '80,8080/tcp', mode: 'normal', reply: 'on-data' }, { ports: 21, mode: 'normal' }] },
    })
    expect(config.ports.defaultMode).toBe('ignore')
    expect(config.ports.rules).toEqual([
      { ports: '80,8080/tcp', mode: 'normal', reply: 'on-data' },
      { ports: 21, mode: 'normal', reply: 'auto' },
    ])
  })

  it('a top-level value that is not a mapping is refused', () => {
    for (const raw of [[], ['monitor'], 'monitor', 42, true]) {
      const err = configErrorOf(() => parseConfig(raw))
      expect(err.issues).toEqual([{ path: '(top level)', message: expect.any(String) }])
    }
  })
})

describe('mirror and proxy', () => {
  const ssh = { host: '192.0.2.10', port: 22, protocol: 'tcp' }
  const dns = { host: 'dns.internal', port: 53, protocol: 'udp' }

  it('accepts mirror rules, with and without mirrorPort, and mirror as the default mode', () => {
    const config = parseConfig({ ports: { defaultMode: 'mirror', rules: [{ ports: '445/tcp', mode: 'mirror', mirrorPort: 4445 }] } })
    expect(config.ports.rules[0]).toMatchObject({ mode: 'mirror', mirrorPort: 4445 })
    expect(config.ports.defaultMode).toBe('mirror')
  })

  it('accepts a proxy rule naming a target of its protocol, and fills the target defaults', () => {
    const config = parseConfig({ proxy: { targets: { ssh, dns } }, ports: { rules: [{ ports: '22/tcp,2222/tcp', mode: 'proxy', proxy: 'ssh' }, { ports: '53/udp', mode: 'proxy', proxy: 'dns' }] } })
    expect(config.proxy.targets['ssh']).toEqual({ ...ssh, maxConcurrent: 64, warm: 0, warmMaxAgeMs: 5_000 })
  })

  it('accepts warm connections on a tcp target and refuses them on a udp one, or out of range, naming the key', () => {
    expect(parseConfig({ proxy: { targets: { ssh: { ...ssh, warm: 4, warmMaxAgeMs: 2_000 } } } }).proxy.targets['ssh']).toMatchObject({ warm: 4, warmMaxAgeMs: 2_000 })
    const udp = configErrorOf(() => parseConfig({ proxy: { targets: { dns: { ...dns, warm: 1 } } } }))
    expect(issueAt(udp.issues, 'proxy.targets.dns.warm').message).toMatch(/tcp targets only/)
    const many = configErrorOf(() => parseConfig({ proxy: { targets: { ssh: { ...ssh, warm: 33 } } } }))
    issueAt(many.issues, 'proxy.targets.ssh.warm')
    const young = configErrorOf(() => parseConfig({ proxy: { targets: { ssh: { ...ssh, warm: 1, warmMaxAgeMs: 100 } } } }))
    issueAt(young.issues, 'proxy.targets.ssh.warmMaxAgeMs')
  })

  it('refuses a proxy rule with no target, naming the defined ones', () => {
    const err = configErrorOf(() => parseConfig({ proxy: { targets: { ssh } }, ports: { rules: [{ ports: '22/tcp', mode: 'proxy' }] } }))
    expect(issueAt(err.issues, 'ports.rules.0.proxy').message).toMatch(/needs the name of its target.*defined targets: ssh/)
  })

  it('refuses an undefined target, saying where to add it', () => {
    const err = configErrorOf(() => parseConfig({ ports: { rules: [{ ports: '22/tcp', mode: 'proxy', proxy: 'sshd' }] } }))
    expect(issueAt(err.issues, 'ports.rules.0.proxy').message).toMatch(/"sshd" is not defined \(no targets are defined under proxy.targets\); add it under proxy.targets/)
  })

  it('refuses a TCP port relayed to a UDP target and the other way round, with the fix', () => {
    const tcpToUdp = configErrorOf(() => parseConfig({ proxy: { targets: { dns } }, ports: { rules: [{ ports: '53/tcp', mode: 'proxy', proxy: 'dns' }] } }))
    expect(issueAt(tcpToUdp.issues, 'ports.rules.0.proxy').message).toMatch(/covers tcp but proxy target "dns" is udp.*add "\/udp"/)
    // A port list without a protocol covers both, so it cannot go to one single-protocol target.
    const both = configErrorOf(() => parseConfig({ proxy: { targets: { ssh } }, ports: { rules: [{ ports: '2222', mode: 'proxy', proxy: 'ssh' }] } }))
    expect(issueAt(both.issues, 'ports.rules.0.proxy').message).toMatch(/covers udp but proxy target "ssh" is tcp/)
  })

  it('refuses mode-specific keys on the wrong mode', () => {
    const err = configErrorOf(() => parseConfig({ proxy: { targets: { ssh } }, ports: { rules: [{ ports: '80/tcp', mode: 'normal', mirrorPort: 81 }, { ports: '81/tcp', mode: 'mirror', proxy: 'ssh' }] } }))
    expect(issueAt(err.issues, 'ports.rules.0.mirrorPort').message).toMatch(/mode mirror only/)
    expect(issueAt(err.issues, 'ports.rules.1.proxy').message).toMatch(/mode proxy only/)
  })

  it('defaultMode proxy needs a target per protocol', () => {
    const err = configErrorOf(() => parseConfig({ proxy: { targets: { ssh } }, ports: { defaultMode: 'proxy', defaultProxy: { tcp: 'ssh' } } }))
    expect(issueAt(err.issues, 'ports.defaultProxy.udp').message).toMatch(/needs a udp target/)
    const ok = parseConfig({ proxy: { targets: { ssh, dns } }, ports: { defaultMode: 'proxy', defaultProxy: { tcp: 'ssh', udp: 'dns' } } })
    expect(ok.ports.defaultProxy).toEqual({ tcp: 'ssh', udp: 'dns' })
    const wrong = configErrorOf(() => parseConfig({ proxy: { targets: { ssh } }, ports: { defaultProxy: { udp: 'ssh' } } }))
    expect(issueAt(wrong.issues, 'ports.defaultProxy.udp').message).toMatch(/covers udp but proxy target "ssh" is tcp/)
  })

  it('refuses bad target definitions and names', () => {
    const err = configErrorOf(() => parseConfig({ proxy: { targets: { 'bad name': ssh, ok: { host: '', port: 0, protocol: 'sctp' } } } }))
    const paths = err.issues.map((i) => i.path)
    expect(paths).toEqual(expect.arrayContaining(['proxy.targets.ok.host', 'proxy.targets.ok.port', 'proxy.targets.ok.protocol']))
    expect(err.issues.some((i) => i.path.startsWith('proxy.targets') && /target name/.test(i.message))).toBe(true)
    const extra = configErrorOf(() => parseConfig({ proxy: { targets: { ssh: { ...ssh, hots: 'x' } } } }))
    expect(issueAt(extra.issues, 'proxy.targets.ssh').message).toMatch(/unknown key/)
  })

  it('checks mirror.deny entries as CIDR ranges, naming the bad one', () => {
    expect(parseConfig({ mirror: { deny: ['203.0.113.0/24', '2001:db8::/32', '198.51.100.7'] } }).mirror.deny).toHaveLength(3)
    const err = configErrorOf(() => parseConfig({ mirror: { deny: ['203.0.113.0/24', '10.0.0.0/33', 'example.com'] } }))
    expect(issueAt(err.issues, 'mirror.deny.1').message).toMatch(/prefix/)
    expect(issueAt(err.issues, 'mirror.deny.2').message.length).toBeGreaterThan(0)
  })

  it('refuses non-positive budgets and timeouts', () => {
    const err = configErrorOf(() => parseConfig({ mirror: { connectTimeoutMs: 0, bytesPerMinutePerSource: -1 }, proxy: { resolveTtlMs: 1.5 } }))
    expect(err.issues.map((i) => i.path)).toEqual(expect.arrayContaining(['mirror.connectTimeoutMs', 'mirror.bytesPerMinutePerSource', 'proxy.resolveTtlMs']))
  })
})

describe('overrides', () => {
  const FILE = [
    'monitor:',
    '  queue: 7',
    'store:',
    '  path: /srv/file.db',
    '  batchWindowMs: 50',
    'responder:',
    '  templatesDir: /srv/file-templates',
    '  idleTimeoutMs: 1234',
    'rules:',
    '  manage: true',
    'log:',
    '  level: warn',
    '',
  ].join('\n')

  it('each override wins over the file and leaves the rest of its section alone', async () => {
    const path = await writeYaml(FILE)
    const config = loadConfig(path, { queue: 9, dbPath: '/tmp/cli.db', templatesDir: '/tmp/cli-templates', manageRules: false, logLevel: 'debug' })
    expect(config.monitor.queue).toBe(9)
    expect(config.store.path).toBe('/tmp/cli.db')
    expect(config.store.batchWindowMs).toBe(50)
    expect(config.responder.templatesDir).toBe('/tmp/cli-templates')
    expect(config.responder.idleTimeoutMs).toBe(1234)
    expect(config.rules.manage).toBe(false)
    expect(config.log.level).toBe('debug')
    expect(isDeepFrozen(config)).toBe(true)
  })

  it('without overrides the file values hold', async () => {
    const config = loadConfig(await writeYaml(FILE))
    expect(config.monitor.queue).toBe(7)
    expect(config.store.path).toBe('/srv/file.db')
    expect(config.responder.templatesDir).toBe('/srv/file-templates')
    expect(config.rules.manage).toBe(true)
    expect(config.log.level).toBe('warn')
  })

  it('overrides apply to the defaults when there is no file', () => {
    const config = loadConfig(undefined, { queue: 3, manageRules: false })
    expect(config.monitor.queue).toBe(3)
    expect(config.rules.manage).toBe(false)
    expect(config.monitor.maxHoldMs).toBe(2_000)
  })

  it('an override is validated like the file and names the key path', () => {
    expect(issueAt(configErrorOf(() => loadConfig(undefined, { queue: 70_000 })).issues, 'monitor.queue')).toBeDefined()
    expect(issueAt(configErrorOf(() => loadConfig(undefined, { logLevel: 'chatty' })).issues, 'log.level')).toBeDefined()
    expect(issueAt(configErrorOf(() => loadConfig(undefined, { dbPath: '' })).issues, 'store.path')).toBeDefined()
  })

  it('an override does not hide a section of the wrong type', () => {
    // Regression: the override used to replace `monitor: "oops"` with `{ queue }`, and the bad section passed silently.
    expect(issueAt(configErrorOf(() => parseConfig({ monitor: 'oops' }, { queue: 3 })).issues, 'monitor')).toBeDefined()
    expect(issueAt(configErrorOf(() => parseConfig({ store: ['x'] }, { dbPath: '/tmp/a.db' })).issues, 'store')).toBeDefined()
    expect(issueAt(configErrorOf(() => parseConfig({ log: 5 }, { logLevel: 'debug' })).issues, 'log')).toBeDefined()
  })

  it('overrides do not modify the object that was passed in', () => {
    const raw = { monitor: { queue: 1 } }
    parseConfig(raw, { queue: 2 })
    expect(raw).toEqual({ monitor: { queue: 1 } })
  })
})

describe('YAML files', () => {
  it('reads a valid file', async () => {
    const path = await writeYaml(
      [
        'listeners:',
        '  idleLifetimeMs: 60000',
        'ports:',
        '  defaultMode: normal',
        '  rules:',
        '    - ports: "22/tcp, 2222"',
        '      mode: ignore',
        '    - ports: 21',
        '      mode: normal',
        '      reply: banner',
        '',
      ].join('\n'),
    )
    const config = loadConfig(path)
    expect(config.listeners.idleLifetimeMs).toBe(60_000)
    expect(config.listeners.maxListeners).toBe(4_096)
    expect(config.ports.rules).toEqual([
      { ports: '22/tcp, 2222', mode: 'ignore', reply: 'auto' },
      { ports: 21, mode: 'normal', reply: 'banner' },
    ])
    expect(isDeepFrozen(config)).toBe(true)
  })

  it('an empty file and a comment-only file give the defaults', async () => {
    expect(loadConfig(await writeYaml(''))).toEqual(DEFAULTS)
    expect(loadConfig(await writeYaml('# nothing set\n'))).toEqual(DEFAULTS)
  })

  it('invalid YAML is HT_ERR_CONFIG_READ', async () => {
    const path = await writeYaml('monitor:\n  queue: [1, 2\nstore: {\n')
    expect(errorCodeOf(() => loadConfig(path))).toBe('HT_ERR_CONFIG_READ')
  })

  it('a bad indentation is HT_ERR_CONFIG_READ', async () => {
    const path = await writeYaml('monitor:\n  queue: 1\n   maxHoldMs: 5\n')
    expect(errorCodeOf(() => loadConfig(path))).toBe('HT_ERR_CONFIG_READ')
  })

  it('duplicate keys are refused, in a section and at the top level', async () => {
    const inSection = await writeYaml('monitor:\n  queue: 1\n  queue: 2\n')
    expect(errorCodeOf(() => loadConfig(inSection))).toBe('HT_ERR_CONFIG_READ')
    const topLevel = await writeYaml('monitor:\n  queue: 1\nmonitor:\n  maxHoldMs: 5\n')
    expect(errorCodeOf(() => loadConfig(topLevel))).toBe('HT_ERR_CONFIG_READ')
  })

  it('a missing file is HT_ERR_CONFIG_READ with the system error as cause', async () => {
    const path = join(await tempDir(), 'absent.yaml')
    try {
      loadConfig(path)
      expect.unreachable('loadConfig should have thrown')
    } catch (err) {
      expect(err).toBeInstanceOf(HoneytrapError)
      expect((err as HoneytrapError).code).toBe('HT_ERR_CONFIG_READ')
      expect(((err as HoneytrapError).cause as NodeJS.ErrnoException).code).toBe('ENOENT')
    }
  })

  it('a directory instead of a file is HT_ERR_CONFIG_READ', async () => {
    const dir = await tempDir()
    expect(errorCodeOf(() => loadConfig(dir))).toBe('HT_ERR_CONFIG_READ')
  })

  it('a top-level list is refused as HT_ERR_CONFIG_INVALID at the top level', async () => {
    const path = await writeYaml('- monitor\n- rules\n')
    const err = configErrorOf(() => loadConfig(path))
    expect(err.issues.map((i) => i.path)).toEqual(['(top level)'])
  })

  it('a top-level scalar is refused', async () => {
    const path = await writeYaml('just a string\n')
    expect(configErrorOf(() => loadConfig(path)).issues.map((i) => i.path)).toEqual(['(top level)'])
  })

  it('a schema error in a file names the key path', async () => {
    const path = await writeYaml('limits:\n  maxConnections: -1\nlistners:\n  backlog: 5\n')
    const err = configErrorOf(() => loadConfig(path))
    issueAt(err.issues, 'limits.maxConnections')
    expect(issueAt(err.issues, '(top level)').message).toContain('"listners"')
  })

  it('a YAML alias bomb is refused rather than expanded', async () => {
    const lines = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]']
    for (let i = 1; i <= 8; i++) lines.push(`a${i}: &a${i} [${Array.from({ length: 10 }, () => `*a${i - 1}`).join(', ')}]`)
    const path = await writeYaml(`${lines.join('\n')}\n`)
    expect(errorCodeOf(() => loadConfig(path))).toBe('HT_ERR_CONFIG_READ')
  })
})

describe('honeytrap.example.yaml', () => {
  it('exists and parses to exactly the defaults', () => {
    // The example documents every key with its default value: a drift between it and the schema fails here.
    expect(existsSync(EXAMPLE_PATH), `${EXAMPLE_PATH} should exist`).toBe(true)
    expect(loadConfig(EXAMPLE_PATH)).toEqual(DEFAULTS)
  })

  it('spells out every key itself rather than leaving it to the defaults', () => {
    const keyPaths = (value: unknown, prefix = ''): string[] =>
      value !== null && typeof value === 'object' && !Array.isArray(value)
        ? Object.entries(value).flatMap(([k, v]) => keyPaths(v, prefix === '' ? k : `${prefix}.${k}`))
        : [prefix]
    const raw: unknown = parseYaml(readFileSync(EXAMPLE_PATH, 'utf8'))
    expect(keyPaths(raw).sort()).toEqual(keyPaths(DEFAULTS).sort())
  })
})

describe('sections left empty', () => {
  it('reads a section whose keys are all commented out (YAML null) as the defaults', () => {
    const config = parseConfig(parseYaml('monitor:\n  # queue: 3\nstore:\n  path: /tmp/x.db\n'))
    expect(config.monitor).toEqual(parseConfig({}).monitor)
    expect(config.store.path).toBe('/tmp/x.db')
  })

  it('still refuses a section of the wrong type, even with an override for it', () => {
    expect(() => parseConfig({ monitor: 'oops' }, { queue: 3 })).toThrow(ConfigError)
  })
})

describe('store bounds', () => {
  it('refuses a queue byte bound that one session could exceed, naming both keys', () => {
    const err = configErrorOf(() => parseConfig({ responder: { maxAttackBytes: 1_000_000 }, store: { maxQueuedBytes: 1_500_000 } }))
    expect(issueAt(err.issues, 'store.maxQueuedBytes').message).toMatch(/at least twice responder.maxAttackBytes \(2000000\)/)
    expect(parseConfig({ responder: { maxAttackBytes: 1_000_000 }, store: { maxQueuedBytes: 2_000_000 } }).store.maxQueuedBytes).toBe(2_000_000)
  })
})
