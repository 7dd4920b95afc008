import type { Check, CheckStatus, MonitorName } from '../doctor/checks.js'
import { runDoctor, type DoctorReport } from '../doctor/run-doctor.js'
import { escapeForTerminal } from './terminal-text.js'
import { parseFlags } from './usage.js'

/**
 * `honeytrap-ts doctor [--json]`: which capture monitors this host supports, and for each one that is not usable why
 * not and the fix. Resolves 0 when at least one monitor is usable, 1 when none is.
 */
export async function runDoctorCommand(args: readonly string[]): Promise<number> {
  const { values } = parseFlags('doctor', args, { json: { type: 'boolean' } })
  const report = await runDoctor()
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify(report)}\n`)
  } else {
    process.stdout.write(formatDoctorReport(report, { color: process.stdout.isTTY === true }))
  }
  return report.recommended === null ? 1 : 0
}

const MAX_DETAIL_LINES = 12 // a libbpf log can run long; --json keeps all of it

const GROUPS: readonly { readonly monitor: MonitorName | 'all'; readonly title: string }[] = [
  { monitor: 'all', title: 'host' },
  { monitor: 'nfqueue', title: 'nfqueue (iptables NFQUEUE)' },
  { monitor: 'ebpf', title: 'ebpf (sk_lookup steering, XDP SYN facts)' },
  { monitor: 'pcap', title: 'pcap (libpcap capture)' },
]

const LABELS: Readonly<Record<CheckStatus, string>> = { ok: 'ok', warn: 'warn', fail: 'FAIL' }
const COLORS: Readonly<Record<CheckStatus, string>> = { ok: '32', warn: '33', fail: '31' }

/**
 * The human report: a heading per monitor, one line per check, the detail and fix indented under warnings and
 * failures, each monitor's verdict, and the recommendation last. Text from the host (process and interface names,
 * tool messages) is escaped, so nothing it holds can drive the terminal. Pure.
 */
export function formatDoctorReport(report: DoctorReport, options: { readonly color: boolean }): string {
  const paint = (code: string, text: string): string => (options.color ? `\u001b[${code}m${text}\u001b[0m` : text)
  const safe = (text: string): string => escapeForTerminal(text)
  const width = Math.max(...report.checks.map((c) => c.id.length))
  const { host } = report
  const out: string[] = [
    `honeytrap-ts doctor: Linux ${safe(host.kernel)}, Node ${host.node}, euid ${host.euid ?? 'unknown'}, CapEff ${host.capEff ?? 'unknown'}`,
    'Reads only: no module loaded, no rule installed, no queue bound, no program attached.',
  ]
  for (const group of GROUPS) {
    const checks = report.checks.filter((c) => c.monitor === group.monitor)
    if (checks.length === 0) continue
    out.push('', paint('1', group.title))
    for (const check of checks) out.push(...formatCheck(check, width, paint, safe))
    const verdict = report.monitors.find((m) => m.monitor === group.monitor)
    if (verdict !== undefined) {
      out.push(
        verdict.usable
          ? `  => ${verdict.monitor}: ${paint(COLORS.ok, 'usable')}${verdict.warned.length > 0 ? ` (${verdict.warned.length} warning(s))` : ''}`
          : `  => ${verdict.monitor}: ${paint(COLORS.fail, 'NOT usable')} (${verdict.failed.join(', ')})`,
      )
    }
  }
  out.push('')
  out.push(
    report.recommended === null
      ? paint('1', 'recommended monitor: none (no monitor can run on this host as things are; see the fixes above)')
      : paint('1', `recommended monitor: ${report.recommended}`),
  )
  return `${out.join('\n')}\n`
}

function formatCheck(check: Check, width: number, paint: (code: string, text: string) => string, safe: (text: string) => string): string[] {
  const label = paint(COLORS[check.status], LABELS[check.status].padEnd(4))
  const lines = [`  ${label}  ${check.id.padEnd(width)}  ${safe(check.summary)}`]
  if (check.status === 'ok') return lines
  const indent = ' '.repeat(10)
  if (check.detail !== undefined && check.detail !== '') {
    const detail = check.detail.trimEnd().split('\n')
    for (const line of detail.slice(0, MAX_DETAIL_LINES)) lines.push(`${indent}${safe(line)}`)
    if (detail.length > MAX_DETAIL_LINES) lines.push(`${indent}... ${detail.length - MAX_DETAIL_LINES} more line(s) (--json shows all)`)
  }
  if (check.fix !== undefined) lines.push(`${indent}fix: ${safe(check.fix)}`)
  return lines
}
