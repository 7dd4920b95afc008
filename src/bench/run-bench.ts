import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, release, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs, promisify } from 'node:util'
import { loadConfig } from '../config/load-config.js'
import { parseOpenFilesLimit } from '../supervisor/fd-limit.js'
import { stopAllSystems } from './bench-system.js'
import { bottleneckNotes, buildRows, formatLoadTable, formatProxyLoadTable, formatResultsTable, missedTargets, type BenchResults } from './report.js'
import { analysisScenario } from './analysis-scenario.js'
import { ebpfScenario } from './ebpf-scenario.js'
import { pipelineScenario } from './pipeline-scenario.js'
import { proxyScenario } from './proxy-scenario.js'
import { REFERENCE_REPLY } from './reference-monitor.js'
import { alternateRounds, BENCH_LIMITS_YAML, HOT_PORT, hotScenario, memoryScenario, newPortScenario, rateScenario, serialScenario, type ScenarioContext } from './scenarios.js'

/**
 * `npm run bench`: honeytrap-ts against a minimal reference monitor, in network namespaces this process creates and
 * deletes, all traffic on their veth link. Prints a markdown table (figure, reference, honeytrap-ts, ratio, target,
 * result) and writes every measurement to bench/results/latest.json. It is a measurement, not a test: it exits 0
 * when a target is missed, and says MISSED. Flags (or env): --quick (BENCH_QUICK=1) shortens every run, --only a,b,c,d,e,f,g
 * (BENCH_ONLY) picks sections (d: proxy mode against a direct connection, see proxy-scenario.ts; e: the plugin
 * pipeline, see pipeline-scenario.ts; f: offline analysis of a million stored attacks, see analysis-scenario.ts; g: the eBPF monitor against the NFQUEUE one, see ebpf-scenario.ts), --gen-procs N (BENCH_GEN_PROCS) splits closed loops over N generator processes,
 * --profile (BENCH_PROFILE=1) writes main-thread CPU profiles of both systems to bench/results/profiles/.
 */

type Section = 'a' | 'b' | 'c' | 'd' | 'e' | 'f' | 'g'

interface BenchOptions {
  readonly quick: boolean
  readonly only: readonly Section[]
  readonly genProcs: number
  readonly profile: boolean
}

// Limits high enough not to throttle the benchmark itself; the idle timeout outlasts the 10,000 held connections.
// The sensor's templates are one file for the hot port holding the reference's reply: the same bytes on the wire.
function benchConfig(templatesDir: string): string {
  return [
    '# written by npm run bench',
    BENCH_LIMITS_YAML,
    `responder: { idleTimeoutMs: 60000, templatesDir: ${JSON.stringify(templatesDir)} }`,
    '',
  ].join('\n')
}

// Rounds of the throughput figures (a) and (b); each figure is the median round (see alternateRounds).
const ROUNDS = 3
const MAX_RUN_MS = 30 * 60_000 // a hard bound on the whole run, far above its ~17 minutes
const RESULTS_DIR = fileURLToPath(new URL('../../bench/results/', import.meta.url))

function parseOptions(argv: readonly string[], env: NodeJS.ProcessEnv): BenchOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: { quick: { type: 'boolean' }, only: { type: 'string' }, 'gen-procs': { type: 'string' }, profile: { type: 'boolean' } },
  })
  const onlyText = values.only ?? env['BENCH_ONLY'] ?? 'a,b,c,d,e,f,g'
  const only = onlyText.split(',').map((s) => s.trim().toLowerCase())
  const unknown = only.filter((s) => !['a', 'b', 'c', 'd', 'e', 'f', 'g'].includes(s))
  if (unknown.length > 0) throw new Error(`--only takes a comma-separated list of a, b, c, d, e, f, g; got "${onlyText}"`)
  const genProcs = Number(values['gen-procs'] ?? env['BENCH_GEN_PROCS'] ?? 1)
  if (!Number.isInteger(genProcs) || genProcs < 1 || genProcs > 8) throw new Error('--gen-procs takes an integer from 1 to 8')
  return {
    quick: values.quick === true || env['BENCH_QUICK'] === '1',
    only: only as Section[],
    genProcs,
    profile: values.profile === true || env['BENCH_PROFILE'] === '1',
  }
}

/** The commit measured, and the files changed on top of it (outside the benchmark's own): figures belong to a tree. */
async function describeTree(): Promise<BenchResults['tree']> {
  const root = fileURLToPath(new URL('../../', import.meta.url))
  const git = async (args: readonly string[]): Promise<string> => (await promisify(execFile)('git', ['-C', root, ...args])).stdout
  try {
    const commit = (await git(['rev-parse', '--short', 'HEAD'])).trim()
    const changed = (await git(['status', '--porcelain']))
      .split('\n')
      .map((line) => line.slice(3).trim())
      .filter((path) => path !== '' && !path.startsWith('src/bench/') && path !== 'docs/benchmarks.md')
    return { commit, changedFiles: changed }
  } catch {
    return { commit: 'unknown', changedFiles: [] }
  }
}

/** The descriptor limit every process of the run inherits (honeytrap-ts derives its maxConnections from it). */
function readFdLimit(): { readonly soft: number; readonly hard: number } | null {
  return parseOpenFilesLimit(readFileSync('/proc/self/limits', 'utf8'))
}

function describeMachine(): BenchResults['machine'] {
  const list = cpus()
  const fd = readFdLimit()
  return {
    cpus: list.length,
    model: list[0]?.model ?? 'unknown',
    kernel: release(),
    node: process.version,
    memMiB: Math.round(totalmem() / 2 ** 20),
    fdLimit: fd === null ? 'unknown' : `${fd.soft}/${fd.hard}`,
  }
}

async function runSections(options: BenchOptions, ctx: ScenarioContext, templatesDir: string): Promise<Pick<BenchResults, 'generatorCheck' | 'a' | 'b' | 'c' | 'd' | 'e' | 'f' | 'g'>> {
  const has = (s: Section): boolean => options.only.includes(s)
  let generatorCheck: BenchResults['generatorCheck'] = null
  let a: BenchResults['a'] = null
  let b: BenchResults['b'] = null
  let c: BenchResults['c'] = null
  if (has('a')) {
    // The generator check first: how fast the generator goes against a server that costs almost nothing.
    generatorCheck = { plain1: await hotScenario('plain', ctx, { procs: 1 }), plain2: await hotScenario('plain', ctx, { procs: 2 }) }
    const hot = await alternateRounds(options.quick ? 1 : ROUNDS, (kind) => hotScenario(kind, ctx))
    a = { ...hot, honeytrapInfo: await hotScenario('honeytrap-ts', ctx, { logLevel: 'info' }) }
  }
  if (has('b')) {
    // Reference and honeytrap-ts alternate, so load from elsewhere on the machine hits both alike.
    const newport = await alternateRounds(options.quick ? 1 : ROUNDS, (kind) => newPortScenario(kind, ctx))
    const rate = { reference: await rateScenario('reference', ctx), honeytrap: await rateScenario('honeytrap-ts', ctx) }
    const serial = { reference: await serialScenario('reference', ctx), honeytrap: await serialScenario('honeytrap-ts', ctx) }
    b = { newport, rate, serial }
  }
  if (has('c')) c = { reference: await memoryScenario('reference', ctx), honeytrap: await memoryScenario('honeytrap-ts', ctx) }
  // (d) compares honeytrap-ts with itself: its proxy port against a direct connection to the same backend.
  const d = has('d') ? await proxyScenario(ctx) : null
  // (e) also compares honeytrap-ts with itself: its capture rate with the plugin pipeline off and on.
  const e = has('e') ? await pipelineScenario(ctx, templatesDir) : null
  // (f) has no reference either: the analyst's commands on a month of generated attacks, against the issue's budgets.
  const f = has('f') ? await analysisScenario(ctx) : null
  // (g) compares the sensor on its two capture paths: the NFQUEUE monitor and the eBPF one.
  const g = has('g') ? await ebpfScenario(ctx) : null
  return { generatorCheck, a, b, c, d, e, f, g }
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2), process.env)
  if (process.getuid?.() !== 0) {
    process.stderr.write('npm run bench needs root: it creates network namespaces, iptables rules and an NFQUEUE\n')
    return 1
  }
  const dir = mkdtempSync(join(tmpdir(), 'ht-bench-'))
  const configPath = join(dir, 'config.yaml')
  const templatesDir = join(dir, 'templates')
  mkdirSync(templatesDir)
  writeFileSync(join(templatesDir, `${HOT_PORT}_tcp`), REFERENCE_REPLY)
  writeFileSync(configPath, benchConfig(templatesDir))
  const startedMs = Date.now()
  const startedAt = new Date(startedMs).toISOString()
  const tree = await describeTree() // now, next to the build `npm run bench` just made: the tree may change during the run
  const cleanup = async (): Promise<void> => {
    await stopAllSystems()
    rmSync(dir, { recursive: true, force: true })
  }
  const abort = (why: string, code: number): void => {
    process.stderr.write(`bench: ${why}; stopping what it started\n`)
    void cleanup().finally(() => process.exit(code))
  }
  const watchdog = setTimeout(() => abort(`over its ${MAX_RUN_MS / 60_000} min bound`, 2), MAX_RUN_MS)
  process.once('SIGINT', () => abort('interrupted', 130))
  process.once('SIGTERM', () => abort('terminated', 143))

  const profileDir = options.profile ? join(RESULTS_DIR, 'profiles') : null
  const ctx: ScenarioContext = {
    dir,
    configPath,
    queue: loadConfig(configPath).monitor.queue,
    quick: options.quick,
    genProcs: options.genProcs,
    cpuProfileDir: profileDir,
    rules: new Map(),
    progress: (line) => process.stderr.write(`[${((Date.now() - startedMs) / 1_000).toFixed(1).padStart(6)} s] ${line}\n`),
  }
  let sections: Awaited<ReturnType<typeof runSections>>
  try {
    sections = await runSections(options, ctx, templatesDir)
  } finally {
    clearTimeout(watchdog)
    await cleanup()
  }

  const reference = ctx.rules.get('reference') ?? null
  const honeytrap = ctx.rules.get('honeytrap-ts') ?? null
  const results: BenchResults = {
    startedAt,
    durationMs: Date.now() - startedMs,
    machine: describeMachine(),
    tree,
    options: { quick: options.quick, only: options.only, genProcs: options.genProcs },
    rules: { reference, honeytrap, identical: reference === null || honeytrap === null ? null : reference === honeytrap },
    ...sections,
  }
  const rows = buildRows(results)
  const m = results.machine
  const out = [
    `# honeytrap-ts benchmark, ${startedAt}${options.quick ? ' (--quick)' : ''}`,
    '',
    `${m.cpus} × ${m.model}, ${m.memMiB} MiB, Linux ${m.kernel}, Node ${m.node}, open files ${m.fdLimit}; run took ${(results.durationMs / 1_000).toFixed(0)} s.`,
    `Tree: ${results.tree.commit}${results.tree.changedFiles.length > 0 ? ` + uncommitted changes in ${results.tree.changedFiles.length} file(s) outside src/bench/` : ''}.`,
    `Rules seen by both systems: ${results.rules.identical === null ? 'not compared' : results.rules.identical ? 'identical' : 'DIFFERENT (see latest.json)'}.`,
    '',
    'Ratio = honeytrap-ts / reference (higher is better for rates, lower for latency and memory).',
    '',
    formatResultsTable(rows),
    '',
    ...(results.a === null && results.b === null && results.c === null ? [] : ['Where the CPU went (generator and system CPU in % of one core):', '', formatLoadTable(results), '']),
    ...(results.d === null ? [] : ['Where the CPU went in the bulk transfers of (d), median runs (% of one core over the transfer):', '', formatProxyLoadTable(results.d), '']),
    ...bottleneckNotes(results).map((note) => `- ${note}`),
    '',
    ...missedTargets(rows),
    '',
  ]
  process.stdout.write(out.join('\n'))
  mkdirSync(RESULTS_DIR, { recursive: true })
  const jsonPath = join(RESULTS_DIR, 'latest.json')
  writeFileSync(jsonPath, `${JSON.stringify({ ...results, rows }, null, 2)}\n`)
  process.stdout.write(`${rows.some((r) => r.verdict === 'MISSED') ? 'Some targets were MISSED.' : 'Every target passed.'} Results: ${jsonPath}\n`)
  return 0
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    void stopAllSystems().finally(() => process.exit(1))
  },
)
