import pino from 'pino'
import { loadConfig } from '../config/load-config.js'
import { parsePortSpec, type PortRange } from '../config/port-spec.js'
import type { Config } from '../config/schema.js'
import { resolveExcludes, ruleOptionsFor } from '../main.js'
import { installRules, removeRules, rulesStatus } from '../rules/iptables-runner.js'
import { intFlag, parseFlags, usageError } from './usage.js'

function excludeFlag(values: readonly string[]): PortRange[] {
  const ranges: PortRange[] = []
  for (const value of values) {
    const parsed = parsePortSpec(value)
    if (!parsed.ok) throw usageError(`--exclude: ${parsed.error}`)
    ranges.push(...parsed.ranges)
  }
  return ranges
}

/** `honeytrap-ts iptables install|remove|status`: manages the capture rules by hand. Resolves with the exit code. */
export async function runIptablesCommand(args: readonly string[]): Promise<number> {
  const [action, ...rest] = args
  if (action !== 'install' && action !== 'remove' && action !== 'status') {
    throw usageError(`iptables: expected install, remove or status, got "${action ?? ''}"`)
  }
  const { values } = parseFlags(`iptables ${action}`, rest, {
    config: { type: 'string' },
    queue: { type: 'string' },
    exclude: { type: 'string', multiple: true },
    interface: { type: 'string' },
    'no-ipv6': { type: 'boolean' },
    'include-loopback': { type: 'boolean' },
    json: { type: 'boolean' },
  })
  const queue = intFlag('queue', values.queue, 0, 65_535)
  const config: Config = loadConfig(values.config, queue !== undefined ? { queue } : {})
  const options = {
    ...ruleOptionsFor(config, [...(await resolveExcludes(config)), ...excludeFlag(values.exclude ?? [])]),
    interface: values.interface ?? config.rules.interface,
    ipv6: values['no-ipv6'] === true ? false : config.rules.ipv6,
    includeLoopback: values['include-loopback'] === true || config.rules.includeLoopback,
  }
  // Progress lines go to stderr so `--json` output on stdout stays machine-readable.
  const log = pino({ level: 'warn', timestamp: pino.stdTimeFunctions.isoTime }, pino.destination(2))
  const print = (human: string, data: unknown): void => {
    process.stdout.write(values.json === true ? `${JSON.stringify(data)}\n` : `${human}\n`)
  }

  if (action === 'install') {
    const report = await installRules(options, { log })
    const lines = report.families.map((f) =>
      f.skipped !== null
        ? `IPv${f.family}: skipped (${f.skipped})`
        : `IPv${f.family}: ${f.tables.map((t) => `${t.ruleCount} rule(s) in ${t.table}/HONEYTRAP${t.addedJump ? ', jump added' : ', jump already present'}`).join('; ')} [${f.backend.backend}]`,
    )
    print(lines.join('\n'), report)
    return 0
  }
  if (action === 'remove') {
    const report = await removeRules({ ipv6: options.ipv6 }, { log })
    const lines = report.families.map(
      (f) => `IPv${f.family}: ${f.skipped ?? f.tables.map((t) => `${t.table}: ${t.removedJumps} jump(s) removed, chain ${t.removedChain ? 'deleted' : 'absent'}`).join('; ')}`,
    )
    print(lines.join('\n'), report)
    return 0
  }
  const status = await rulesStatus(options.queue, { log, expect: options })
  const lines = status.families.map((f) =>
    f.skipped !== null
      ? `IPv${f.family}: skipped (${f.skipped})`
      : `IPv${f.family}: ${f.tables.map((t) => `${t.table}: chain ${t.chainPresent ? 'present' : 'absent'}, ${t.jumps.length} jump(s), rules ${t.rulesAsExpected ? 'as expected' : 'NOT as expected'}`).join('; ')} [${f.backend.backend}]`,
  )
  lines.push(`queue ${status.queue.queue}: ${status.queue.bound ? 'bound' : 'not bound'}${status.queue.info ? ` (in queue ${status.queue.info.queueTotal}, dropped ${status.queue.info.dropped + status.queue.info.userDropped})` : ''}`)
  for (const p of status.problems) lines.push(`problem: ${p}`)
  print(lines.join('\n'), status)
  return status.ok ? 0 : 1
}
