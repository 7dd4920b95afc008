import { HoneytrapError } from '../core/errors.js'
import { parseIptablesVersion, parseRuleListing, ruleTarget, type IptablesVersion, type RuleListing } from './iptables-listing.js'
import { buildAcceptSet, buildQueueRules, buildQueueSet, HONEYTRAP_CHAIN, iptablesBinary, QUEUE_TABLE, type RuleOptions, type RulesTable } from './iptables-rules.js'
import { readProcText, runCommand, XTABLES_LOCK_WAIT_S, type CommandResult, type ExecOptions } from './rules-exec.js'

/**
 * One table of one family's iptables with the conventions every command shares: the xtables lock wait, `-t TABLE`,
 * and errors that name the exact command and quote iptables' stderr. The runner decides what to run; this class
 * decides how.
 */

/** The table's listing, or why this family cannot be managed here. Only IPv6 is ever skipped; IPv4 problems throw. */
export type FamilyProbe =
  | { readonly listing: RuleListing; readonly skipped: null }
  | { readonly listing: null; readonly skipped: string }

// What ip6tables prints when the kernel has no IPv6 (ipv6.disable=1) or no IPv6 netfilter support.
const IPV6_UNSUPPORTED = /Address family not supported|can't initialize ip6tables|Protocol not supported|Table does not exist/i

export class FamilyTables {
  readonly family: 4 | 6
  readonly table: RulesTable
  readonly binary: 'iptables' | 'ip6tables'
  readonly #exec: ExecOptions

  constructor(family: 4 | 6, table: RulesTable, exec: ExecOptions) {
    this.family = family
    this.table = table
    this.binary = iptablesBinary(family)
    this.#exec = exec
  }

  /** Runs one command on this table with `-w`, whatever its exit code. */
  async run(args: readonly string[]): Promise<CommandResult> {
    return runCommand(this.binary, ['-w', String(XTABLES_LOCK_WAIT_S), '-t', this.table, ...args], this.#exec)
  }

  /** Runs one command and throws HT_ERR_RULES naming it when it fails. */
  async must(args: readonly string[]): Promise<CommandResult> {
    const result = await this.run(args)
    if (result.exitCode !== 0) throw this.#failure(result)
    return result
  }

  /** `-C`: true when the rule exists, false when iptables says it does not (exit 1); anything else throws. */
  async check(chain: string, rule: readonly string[]): Promise<boolean> {
    const result = await this.run(['-C', chain, ...rule])
    if (result.exitCode === 0) return true
    if (result.exitCode === 1 && !result.notFound) return false
    throw this.#failure(result)
  }

  /** `-V`: which backend this binary drives; a failure reads as unknown rather than aborting a status report. */
  async version(): Promise<IptablesVersion> {
    const result = await runCommand(this.binary, ['-V'], this.#exec)
    return parseIptablesVersion(`${result.stdout}\n${result.stderr}`)
  }

  /**
   * Lists the whole table (`-S`) in one call, so chain presence never depends on the wording of an error, or
   * says why IPv6 cannot be managed: ip6tables missing, IPv6 absent from the kernel, or (when `skipDisabled`, for
   * install) disabled by sysctl, where rules would be dead weight. A missing iptables is an error, not a skip.
   */
  async probe(opts: { readonly skipDisabled: boolean }): Promise<FamilyProbe> {
    if (this.family === 6) {
      const disabled = await readProcText('/proc/sys/net/ipv6/conf/all/disable_ipv6', this.#exec)
      if (disabled === null) return { listing: null, skipped: 'IPv6 is not available in this kernel (booted with ipv6.disable=1?)' }
      if (opts.skipDisabled && disabled.trim() === '1') {
        return { listing: null, skipped: 'IPv6 is disabled (net.ipv6.conf.all.disable_ipv6 = 1)' }
      }
    }
    const result = await this.run(['-S'])
    // iptables-nft's "# Warning" lines come on one stream or the other depending on the version; the parser keeps
    // only `#` lines from the stderr text.
    if (result.exitCode === 0) return { listing: parseRuleListing(`${result.stdout}\n${result.stderr}`), skipped: null }
    if (this.family === 6 && result.notFound) {
      return { listing: null, skipped: 'ip6tables is not installed (Debian/Ubuntu: apt-get install iptables)' }
    }
    if (this.family === 6 && IPV6_UNSUPPORTED.test(result.stderr)) {
      return { listing: null, skipped: `ip6tables cannot be used: ${result.stderr.trim()}` }
    }
    throw this.#failure(result)
  }

  /**
   * Whether the chain holds exactly the expected rules: same count, same targets in the same order, and each rule
   * confirmed by `-C`, which compares what the kernel holds whatever the backend prints. Without options (`status`
   * from the CLI knows only the queue) it checks the shape: in the queue table RETURNs, then the two queue rules for
   * `queue`; in the other, one ACCEPT by mark, whichever mark.
   */
  async chainMatches(listing: RuleListing, expect: { readonly queue: number; readonly options: RuleOptions | null }): Promise<boolean> {
    if (!listing.chains.includes(HONEYTRAP_CHAIN)) return false
    const actual = listing.rules.get(HONEYTRAP_CHAIN) ?? []
    let toCheck: readonly (readonly string[])[]
    if (expect.options !== null) {
      const expected = (this.table === QUEUE_TABLE ? buildQueueSet(expect.options, this.family) : buildAcceptSet(expect.options, this.family)).rules
      if (actual.length !== expected.length) return false
      if (!expected.every((rule, i) => ruleTarget(rule) === ruleTarget(actual[i] ?? []))) return false
      toCheck = expected
    } else if (this.table === QUEUE_TABLE) {
      toCheck = buildQueueRules(expect.queue)
      const split = actual.length - toCheck.length
      if (split < 0) return false
      if (!actual.every((rule, i) => ruleTarget(rule) === (i < split ? 'RETURN' : 'NFQUEUE'))) return false
    } else {
      const only = actual[0]
      if (actual.length !== 1 || only === undefined || ruleTarget(only) !== 'ACCEPT' || !only.includes('--mark')) return false
      toCheck = []
    }
    for (const rule of toCheck) if (!(await this.check(HONEYTRAP_CHAIN, rule))) return false
    return true
  }

  #failure(result: CommandResult): HoneytrapError {
    if (result.notFound) {
      return new HoneytrapError(
        'HT_ERR_RULES',
        `${this.binary} is not installed (\`${result.command}\`: command not found); install it: apt-get install iptables`,
        { cause: result.error },
      )
    }
    const stderr = result.stderr.trim() || '(no output)'
    // The one match a kernel may lack (CONFIG_NETFILTER_XT_MATCH_SOCKET): say which setting leaves it out.
    const fix = result.command.includes('-m socket') ? '; this kernel may lack xt_socket: set rules.skipQueueForServedPorts: false to go without this rule' : ''
    const message = `\`${result.command}\` failed with exit code ${result.exitCode}: ${stderr}${fix}`
    return new HoneytrapError('HT_ERR_RULES', message, { cause: result.error })
  }
}
