import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { alternateRounds, hotScenario, idleRssScenario, newPortScenario, rateScenario, type HotFigures, type Measured, type RateFigures, type Rounds, type ScenarioContext } from './scenarios.js'

/**
 * (g) The eBPF monitor against the NFQUEUE monitor, the same sensor and the same load in the same run: new ports per
 * second (every connection to a never-used port), the hot port, connects at offered rates up to past what the
 * NFQUEUE path carries (none may take 1 s), and idle RSS. Rounds alternate between the two, as in (a) and (b).
 */

export interface EbpfFigures {
  readonly newport: { readonly nfqueue: Measured & Rounds; readonly ebpf: Measured & Rounds }
  readonly hot: { readonly nfqueue: HotFigures & Rounds; readonly ebpf: HotFigures & Rounds }
  readonly rates: readonly { readonly offered: number; readonly nfqueue: RateFigures; readonly ebpf: RateFigures }[]
  readonly idle: { readonly nfqueue: { readonly idleKiB: number }; readonly ebpf: { readonly idleKiB: number } }
}

// Offered new ports per second: below, near and past what the machine carries (the closed loop above measures it,
// about 4,000-5,000 a second on the 2-core VM). Past it, handshakes wait in the kernel's queues and overflow them.
const OFFERED_RATES = [3_000, 4_500, 6_000, 9_000]

export async function ebpfScenario(ctx: ScenarioContext): Promise<EbpfFigures> {
  // The bench config with the monitor switched: everything else (limits, templates) is the same file.
  const ebpfPath = join(ctx.dir, 'config-ebpf.yaml')
  writeFileSync(ebpfPath, `${readFileSync(ctx.configPath, 'utf8')}\nmonitor: { type: ebpf }\n`)
  const ebpfCtx = (label: string): ScenarioContext => ({ ...ctx, configPath: ebpfPath, progress: (line) => ctx.progress(`${line} (${label})`) })
  const nfqueueCtx = (label: string): ScenarioContext => ({ ...ctx, progress: (line) => ctx.progress(`${line} (${label})`) })
  const rounds = ctx.quick ? 1 : 3
  // alternateRounds names its sides reference and honeytrap-ts: here they are the NFQUEUE and the eBPF monitor.
  const newport = await alternateRounds(rounds, (side) => newPortScenario('honeytrap-ts', side === 'reference' ? nfqueueCtx('nfqueue') : ebpfCtx('ebpf')))
  const hot = await alternateRounds(rounds, (side) => hotScenario('honeytrap-ts', side === 'reference' ? nfqueueCtx('nfqueue') : ebpfCtx('ebpf')))
  const rates: { offered: number; nfqueue: RateFigures; ebpf: RateFigures }[] = []
  for (const offered of ctx.quick ? [3_000] : OFFERED_RATES) {
    rates.push({ offered, nfqueue: await rateScenario('honeytrap-ts', nfqueueCtx(`nfqueue ${offered}/s`), offered), ebpf: await rateScenario('honeytrap-ts', ebpfCtx(`ebpf ${offered}/s`), offered) })
  }
  const idle = { nfqueue: await idleRssScenario('honeytrap-ts', nfqueueCtx('nfqueue')), ebpf: await idleRssScenario('honeytrap-ts', ebpfCtx('ebpf')) }
  return { newport: { nfqueue: newport.reference, ebpf: newport.honeytrap }, hot: { nfqueue: hot.reference, ebpf: hot.honeytrap }, rates, idle }
}
