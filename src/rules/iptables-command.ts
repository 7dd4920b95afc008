import { HoneytrapError } from '../core/errors.js'
import { iptablesBinary } from './iptables-rules.js'
import { parseIptablesVersion, parseRuleListing, type IptablesVersion, type RuleListing } from './iptables-listing.js'
import { readProcText, runCommand, XTABLES_LOCK_WAIT_S, type CommandResult, type ExecOptions } from './rules-exec.js'

/**
 * One family's iptables binary with the calling conventions every command shares: the xtables lock wait, the filter
 * table, and errors that name the exact command and quote iptables' stderr. The runner decides what to run; this
 * file decides how.
 */

/** Why a family cannot be managed here, or null when it can. Only IPv6 is ever skipped; IPv4 problems are errors. */
export type FamilyProbe = { readonly listing: RuleListing; readonly skipped: null } | { readonly listing: null; readonly skipped: string }

// What ip6tables prints when the kernel has no IPv6 (ipv6.disable=1) or no ip6_tables/nf_tables IPv6 support.
const IPV6_UNSUPPORTED = /Address family not supported|can't initialize ip6tables|Protocol not supported|Table does not exist/i

export class FamilyTables {
  readonly family: 4 | 6
  readonly binary: 'iptables' | 'ip6tables'
  readonly #exec: ExecOptions

  constructor(family: 4 | 6, exec: ExecOptions) {
    this.family = family
    this.binary = iptablesBinary(family)
    this.#exec = exec
  }

  /** Runs one command with `-w`, whatever its exit code. */
  async run(args: readonly string[]): Promise<CommandResult> {
    return runCommand(this.binary, ['-w', String(XTABLES_LOCK_WAIT_S), ...args], this.#exec)
  }

  /** Runs one command and throws HT_ERR_RULES naming it when it fails. */
  async must(args: readonly string[]): Promise<CommandResult> {
    const result = await this.run(args)
    if (result.exitCode !== 0) throw this.#failure(result)
    return result
  }

  /** `-C`: true when the rule exists, false when iptables says it does not (exit 1); anything else is an error. */
  async check(chain: string, rule: readonly string[]): Promise<boolean> {
    const result = await this.run(['-C', chain, ...rule])
    if (result.exitCode === 0) return true
    if (result.exitCode === 1 && !result.notFound) return false
    throw this.#failure(result)
  }

  /** `-t filter -S`: the whole table in one call, so chain presence never depends on an error message's wording. */
  async list(): Promise<RuleListing> {
    return parseRuleListing((await this.must(['-t', 'filter', '-S'])).stdout)
  }

  /** `-V`: which backend this binary drives; a failure reads as unknown rather than aborting a status report. */
  async version(): Promise<IptablesVersion> {
    const result = await this.run(['-V'])
    return parseIptablesVersion(`${result.stdout}\n${result.stderr}`)
  }

  /**
   * Lists the table, or says why IPv6 cannot be managed: ip6tables missing, IPv6 absent from the kernel, or (when
   * `skipDisabled`, for install) disabled by sysctl, where rules would be dead weight. A missing iptables is an error.
   */
  async probe(opts: { readonly skipDisabled: boolean }): Promise<FamilyProbe> {
    if (this.family === 6) {
      const disabled = await readProcText('/proc/sys/net/ipv6/conf/all/disable_ipv6', this.#exec)
      if (disabled === null) return { listing: null, skipped: 'IPv6 is not available in this kernel (booted with ipv6.disable=1?)' }
      if (opts.skipDisabled && disabled.trim() === '1') {
        return { listing: null, skipped: 'IPv6 is disabled (net.ipv6.conf.all.disable_ipv6 = 1)' }
      }
    }
    const result = await this.run(['-t', 'filter', '-S'])
    if (result.exitCode === 0) return { listing: parseRuleListing(result.stdout), skipped: null }
    if (this.family === 6 && result.notFound) {
      return { listing: null, skipped: 'ip6tables is not installed (Debian/Ubuntu: apt-get install iptables)' }
    }
    if (this.family === 6 && IPV6_UNSUPPORTED.test(result.stderr)) {
      return { listing: null, skipped: `ip6tables cannot be used: ${result.stderr.trim()}` }
    }
    throw this.#failure(result)
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
    return new HoneytrapError('HT_ERR_RULES', `\`${result.command}\` failed with exit code ${result.exitCode}: ${stderr}`, {
      cause: result.error,
    })
  }
}
