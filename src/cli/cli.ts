#!/usr/bin/env node
import { readFileSync } from 'node:fs'
import { HoneytrapError, ConfigError } from '../core/errors.js'
import { usageError } from './usage.js'

// Each command is imported only when it runs: `run` must not carry the others' dependencies (the config schema
// library above all) in its heap for the life of the sensor.
const commands = {
  run: async (args: readonly string[]) => (await import('./run-command.js')).runRunCommand(args),
  iptables: async (args: readonly string[]) => (await import('./iptables-command.js')).runIptablesCommand(args),
  attacks: async (args: readonly string[]) => (await import('./attacks-command.js')).runAttacksCommand(args),
  config: async (args: readonly string[]) => (await import('./config-command.js')).runConfigCommand(args),
  demo: async (args: readonly string[]) => (await import('./demo-command.js')).runDemoCommand(args),
  replay: async (args: readonly string[]) => (await import('./replay-command.js')).runReplayCommand(args),
  db: async (args: readonly string[]) => (await import('./db-command.js')).runDbCommand(args),
  doctor: async (args: readonly string[]) => (await import('./doctor-command.js')).runDoctorCommand(args),
}

const HELP = `honeytrap-ts: a network sensor that answers every connection attempt and stores what attackers send

Usage:
  honeytrap-ts run [--config FILE] [--monitor nfqueue|ebpf|pcap] [--queue N] [--db FILE] [--templates DIR] [--no-rules] [--log-level LEVEL]
                   [--ready-fd N]
      Run the sensor in the foreground (the default command). Installs the capture rules at start and removes
      them at exit unless --no-rules (or rules.manage: false). Ctrl-C or SIGTERM stops it and stores everything;
      SIGHUP reloads the templates. --ready-fd writes one line to descriptor N once the sensor is serving.
  honeytrap-ts iptables install|remove|status [--queue N] [--exclude PORTS] [--interface IF] [--no-ipv6]
                                              [--include-loopback] [--config FILE] [--json]
      Manage the NFQUEUE capture rules (idempotent). sshd's ports are always excluded.
  honeytrap-ts attacks list [--db FILE] [--limit N] [--offset N] [FILTERS] [--json]
  honeytrap-ts attacks show ID [--db FILE] [--max-bytes N] [--json]
  honeytrap-ts attacks stats [--db FILE] [--top N] [FILTERS] [--json]
      FILTERS: --since T --until T (90s, 24h, 7d or 2026-11-20T10:00:00Z) --source ADDR|CIDR --port N|A-B
               --protocol tcp|udp --mode M --close-reason R --min-size N --has-downloads|--no-downloads
               --hash HEX --contains TEXT (\\xHH for bytes) --regex RE|/RE/FLAGS
               --text WORDS (full-text, every word) --match QUERY (FTS5 syntax: OR, NOT, "phrase", prefix*)
  honeytrap-ts attacks export [--db FILE] [--format jsonl|json|csv|pcap|raw] [--output FILE|DIR] [FILTERS]
      Read stored attacks (read-only; safe while the sensor runs).
  honeytrap-ts replay [--config FILE] [--db FILE] [--plugin NAME]... [--since DURATION] [--until DURATION]
                      [--port N] [--protocol tcp|udp] [--id ID]... [--json]
      Run the post-processing plugins (all enabled ones, or each --plugin) over stored attacks, oldest first.
      Resumable: runs that succeeded are never repeated, so artifacts are never duplicated. Ctrl-C stops (exit 130).
  honeytrap-ts db retention --older-than DURATION [--db FILE] [--dry-run] [--json]
  honeytrap-ts db vacuum [--db FILE] [--json]
      Upkeep: remove attacks that started before now - DURATION (90d) with their plugin results, and the responses
      and samples (quarantine files included) nothing references any more, in short transactions, safe while the
      sensor runs; vacuum rewrites the file to give the space back (it locks the database while it runs).
  honeytrap-ts doctor [--json]
      Say which capture monitors (nfqueue, ebpf, pcap) this host supports, why the others are not usable and the
      fix, and which to use. Reads only: loads no module, installs no rule, binds no queue, attaches no program.
      Run it as the user the sensor will run as. Exit 0 when at least one monitor is usable, 1 when none is.
  honeytrap-ts config check [--config FILE]
      Validate a config file and print the effective config as JSON.
  honeytrap-ts demo [--keep-db FILE]
      Run the sensor in two network namespaces it creates, attack it, print what was caught, clean up (root).
  honeytrap-ts --help | --version

Exit codes: 0 ok, 1 runtime failure, 2 bad usage or config, 3 needs root, 130 interrupted (replay, db retention).
Docs: README.md and docs/ in the package.
`

/** Exit codes, documented in README and docs/cli.md. */
export const EXIT = { ok: 0, failure: 1, usage: 2, notRoot: 3 } as const

const USAGE_CODES: ReadonlySet<string> = new Set(['HT_ERR_CLI_USAGE', 'HT_ERR_CONFIG_READ', 'HT_ERR_CONFIG_INVALID', 'HT_ERR_PLUGIN_LOAD'])

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv
  switch (command) {
    case undefined:
    case 'run':
      return commands.run(rest)
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(HELP)
      return EXIT.ok
    case '--version':
    case '-v':
      process.stdout.write(`${version()}\n`)
      return EXIT.ok
    case 'iptables':
    case 'attacks':
    case 'config':
    case 'demo':
    case 'replay':
    case 'db':
    case 'doctor':
      return commands[command](rest)
    default:
      if (command.startsWith('-')) return commands.run(argv)
      throw usageError(`unknown command "${command}"; expected run, iptables, attacks, replay, db, doctor, config or demo (see --help)`)
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`honeytrap-ts: ${err.message}\n`)
      process.exitCode = EXIT.usage
    } else if (err instanceof HoneytrapError) {
      process.stderr.write(`honeytrap-ts: ${err.message} [${err.code}]\n`)
      process.exitCode = err.code === 'HT_ERR_NOT_ROOT' ? EXIT.notRoot : USAGE_CODES.has(err.code) ? EXIT.usage : EXIT.failure
    } else {
      process.stderr.write(`honeytrap-ts: unexpected failure: ${(err as Error)?.stack ?? String(err)}\n`)
      process.exitCode = EXIT.failure
    }
  },
)
