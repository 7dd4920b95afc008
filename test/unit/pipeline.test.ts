import pino from 'pino'
import { describe, expect, it } from 'vitest'
import { DownloadPolicy } from '../../src/plugins/download/download-policy.js'
import { runKey, runPipeline, type PipelineJob, type PipelineOptions, type RunResult } from '../../src/plugins/pipeline.js'
import type { Plugin, PluginPhase, Subject } from '../../src/plugins/plugin.js'
import { attackOf, sha256Hex } from '../helpers/plugin-harness.js'

// The pipeline's rules with plugins written in the test (fakes of plugins are allowed: the pipeline is what is tested).

function plugin(name: string, phase: PluginPhase, process: Plugin['process'], accepts?: (s: Subject) => boolean): Plugin {
  return { name, phase, process, ...(accepts !== undefined && { accepts }) }
}

function options(plugins: Plugin[], overrides: Partial<PipelineOptions> = {}): PipelineOptions {
  return {
    plugins,
    downloads: new DownloadPolicy({ maxBytes: 1024, timeoutMs: 1000, maxRedirects: 1, allow: [], deny: [] }),
    history: { find: () => [], recentDownload: () => null },
    log: pino({ level: 'silent' }),
    signal: new AbortController().signal,
    timeoutMs: 1_000,
    maxDepth: 3,
    maxSubjectsPerAttack: 32,
    maxSubjectBytes: 1024 * 1024,
    ...overrides,
  }
}

function job(payload: string, overrides: Partial<PipelineJob> = {}): PipelineJob {
  return { attack: attackOf(payload), subjects: [], done: [], only: null, ...overrides }
}

async function run(j: PipelineJob, o: PipelineOptions): Promise<{ results: RunResult[]; begun: string[] }> {
  const results: RunResult[] = []
  const begun: string[] = []
  await runPipeline(j, o, { begin: (sha, p) => begun.push(`${p}@${sha.slice(0, 8)}`), end: (r) => results.push(r) })
  return { results, begun }
}

describe('runPipeline', () => {
  it('runs the phases in order and the plugins of a phase in config order', async () => {
    const order: string[] = []
    const record = (name: string) => async () => void order.push(name)
    const plugins = [
      plugin('post', 'postprocess', record('post')),
      plugin('a1', 'analyze', record('a1')),
      plugin('d1', 'decode', record('d1')),
      plugin('s1', 'save', record('s1')),
      plugin('a2', 'analyze', record('a2')),
      plugin('d2', 'decode', record('d2')),
    ]
    await run(job('x'), options(plugins))
    expect(order).toEqual(['d1', 'd2', 'a1', 'a2', 's1', 'post'])
  })

  it('sends a derived payload through the later phases, linked to its parent, and decodes it in turn', async () => {
    const seen: { plugin: string; kind: string; depth: number; parent: string | null; text: string }[] = []
    const decoder = plugin('peel', 'decode', async (s, ctx) => {
      seen.push({ plugin: 'peel', kind: s.kind, depth: s.depth, parent: s.parentSha256, text: s.data.toString() })
      if (s.data.length > 1) ctx.addPayload(s.data.subarray(1), 'peel')
    })
    const analyzer = plugin('look', 'analyze', async (s) => void seen.push({ plugin: 'look', kind: s.kind, depth: s.depth, parent: s.parentSha256, text: s.data.toString() }))
    const { results } = await run(job('abcdef'), options([decoder, analyzer], { maxDepth: 2 }))
    // depth 0 "abcdef" -> 1 "bcdef" -> 2 "cdef"; nothing deeper
    expect(seen.filter((s) => s.plugin === 'look').map((s) => [s.text, s.depth, s.kind])).toEqual([
      ['abcdef', 0, 'attack'],
      ['bcdef', 1, 'decoded'],
      ['cdef', 2, 'decoded'],
    ])
    expect(seen.find((s) => s.text === 'cdef' && s.plugin === 'look')?.parent).toBe(sha256Hex(Buffer.from('bcdef')))
    const payloads = results.flatMap((r) => r.payloads)
    expect(payloads.map((p) => p.data.toString())).toEqual(['bcdef', 'cdef'])
    expect(payloads.every((p) => p.origin === 'peel')).toBe(true)
  })

  it('stops a decoder that yields itself or loops (same bytes are one subject)', async () => {
    let calls = 0
    const loop = plugin('loop', 'decode', async (s, ctx) => {
      calls++
      ctx.addPayload(s.data, 'same') // identical to the subject
      ctx.addPayload(Buffer.from(s.data.toString() === 'A' ? 'B' : 'A'), 'flip') // A -> B -> A ...
    })
    const { results } = await run(job('A'), options([loop], { maxDepth: 8 }))
    expect(calls).toBe(2) // A, then B; the second A is already a subject
    expect(results.flatMap((r) => r.payloads).map((p) => p.data.toString())).toEqual(['B'])
  })

  it('bounds the subjects of one attack', async () => {
    const fan = plugin('fan', 'decode', async (s, ctx) => {
      for (let i = 0; i < 100; i++) ctx.addPayload(Buffer.from(`${s.data.toString()}/${i}`), 'fan')
    })
    const { results } = await run(job('root'), options([fan], { maxSubjectsPerAttack: 10, maxDepth: 8 }))
    expect(results.flatMap((r) => r.payloads)).toHaveLength(9) // 10 subjects with the attack string
  })

  it('cuts a derived payload at maxSubjectBytes', async () => {
    const big = plugin('big', 'decode', async (s, ctx) => {
      if (s.kind === 'attack') ctx.addPayload(Buffer.alloc(5000, 0x41), 'big')
    })
    const { results } = await run(job('x'), options([big], { maxSubjectBytes: 100 }))
    expect(results[0]?.payloads[0]?.data.length).toBe(100)
  })

  it('records a throwing plugin as failed and runs the next one', async () => {
    const ran: string[] = []
    const plugins = [
      plugin('bad', 'analyze', async () => {
        throw new TypeError('boom')
      }),
      plugin('good', 'analyze', async (_s, ctx) => {
        ran.push('good')
        ctx.addArtifact({ kind: 'note', info: { ok: true } })
      }),
    ]
    const { results } = await run(job('x'), options(plugins))
    expect(results.map((r) => [r.plugin, r.status, r.error])).toEqual([
      ['bad', 'failed', 'TypeError: boom'],
      ['good', 'ok', null],
    ])
    expect(results[1]?.artifacts).toEqual([{ kind: 'note', info: { ok: true } }])
    expect(ran).toEqual(['good'])
  })

  it('gives up on a plugin at its deadline, aborts its signal, and ignores what it reports afterwards', async () => {
    let aborted = false
    let lateReport: (() => void) | null = null
    const slow = plugin('slow', 'analyze', (_s, ctx) => {
      ctx.signal.addEventListener('abort', () => (aborted = true))
      lateReport = () => ctx.addArtifact({ kind: 'note', info: { late: true } })
      return new Promise(() => {}) // never settles
    })
    const next = plugin('next', 'analyze', async () => {})
    const started = performance.now()
    const { results } = await run(job('x'), options([slow, next], { timeoutMs: 100 }))
    expect(performance.now() - started).toBeLessThan(1_000)
    expect(results.map((r) => [r.plugin, r.status])).toEqual([
      ['slow', 'timeout'],
      ['next', 'ok'],
    ])
    expect(aborted).toBe(true)
    ;(lateReport as (() => void) | null)?.()
    expect(results[0]?.artifacts).toEqual([])
  })

  it('skips runs already done and runs only the plugins asked for', async () => {
    const ran: string[] = []
    const mk = (name: string) => plugin(name, 'analyze', async () => void ran.push(name))
    const j = job('x')
    await run({ ...j, done: [runKey(j.attack.sha256, 'a')], only: ['a', 'b'] }, options([mk('a'), mk('b'), mk('c')]))
    expect(ran).toEqual(['b'])
  })

  it('gives derived subjects from an earlier run to the plugins again', async () => {
    const texts: string[] = []
    const look = plugin('look', 'analyze', async (s) => void texts.push(`${s.kind}:${s.data.toString()}`))
    const stored = Buffer.from('decoded earlier')
    await run(job('x', { subjects: [{ kind: 'decoded', data: stored, sha256: sha256Hex(stored), depth: 1, parentSha256: null, origin: 'b64Decode' }] }), options([look]))
    expect(texts).toEqual(['attack:x', 'decoded:decoded earlier'])
  })

  it('ignores addPayload outside the decode phase and a filter that throws', async () => {
    const analyzer = plugin('a', 'analyze', async (_s, ctx) => ctx.addPayload(Buffer.from('nope'), 'a'))
    const picky = plugin('p', 'analyze', async () => {}, () => {
      throw new Error('bad filter')
    })
    const { results } = await run(job('x'), options([analyzer, picky]))
    expect(results.map((r) => r.plugin)).toEqual(['a'])
    expect(results[0]?.payloads).toEqual([])
  })

  it('turns an ok download into a sample subject and keeps an oversize one out', async () => {
    const analysed: string[] = []
    const fetcher = plugin('fetch', 'decode', async (s, ctx) => {
      if (s.kind !== 'attack') return
      const attempt = { url: 'http://198.51.100.1/a', outcome: 'ok' as const, reason: null, address: '198.51.100.1', bytes: 3, durationMs: 1 }
      ctx.addDownload(attempt, Buffer.from('ELF'))
      ctx.addDownload({ ...attempt, url: 'http://198.51.100.1/big', bytes: 2000 }, Buffer.alloc(2000))
      ctx.addDownload({ ...attempt, url: 'http://198.51.100.1/missing', outcome: 'server-error', reason: 'HTTP 404', bytes: 0 })
    })
    const look = plugin('look', 'analyze', async (s) => void analysed.push(`${s.kind}:${s.origin}`))
    const { results } = await run(job('x'), options([fetcher, look])) // downloads.maxBytes is 1024
    const downloads = results[0]?.downloads ?? []
    expect(downloads.map((d) => [d.attempt.url, d.attempt.outcome, d.sample?.data.toString() ?? null])).toEqual([
      ['http://198.51.100.1/a', 'ok', 'ELF'],
      ['http://198.51.100.1/big', 'too-large', null],
      ['http://198.51.100.1/missing', 'server-error', null],
    ])
    expect(analysed).toEqual(['attack:payload', 'sample:http://198.51.100.1/a'])
  })

  it('never cuts a sample at maxSubjectBytes (only decoded payloads): the quarantine keeps the file served', async () => {
    const sample = Buffer.alloc(900, 0x42)
    const fetcher = plugin('fetch', 'decode', async (s, ctx) => {
      if (s.kind === 'attack') ctx.addDownload({ url: 'http://198.51.100.1/s', outcome: 'ok', reason: null, address: '198.51.100.1', bytes: 900, durationMs: 1 }, sample)
    })
    const { results } = await run(job('x'), options([fetcher], { maxSubjectBytes: 100 })) // downloads.maxBytes is 1024
    expect(results[0]?.downloads[0]?.sample?.data.length).toBe(900)
    expect(results[0]?.downloads[0]?.sample?.sha256).toBe(sha256Hex(sample))
  })

  it('claims a key once per attack', async () => {
    const claims: boolean[] = []
    const claimer = plugin('c', 'decode', async (s, ctx) => {
      claims.push(ctx.claim('http://x/'))
      if (s.kind === 'attack') ctx.addPayload(Buffer.from('child'), 'c')
    })
    await run(job('x'), options([claimer]))
    expect(claims).toEqual([true, false])
  })

  it('stops between plugins at shutdown and does not report the run it cut short', async () => {
    const shutdown = new AbortController()
    const ran: string[] = []
    const first = plugin('first', 'analyze', async (_s, ctx) => {
      ran.push('first')
      shutdown.abort()
      expect(ctx.signal.aborted).toBe(true) // the plugin's own signal follows the shutdown at once
    })
    const second = plugin('second', 'analyze', async () => void ran.push('second'))
    const { results, begun } = await run(job('x'), options([first, second], { signal: shutdown.signal }))
    expect(ran).toEqual(['first'])
    expect(begun).toHaveLength(1)
    expect(results).toEqual([])
  })
})
