import type { Protocol } from '../attack/attack.js'
import type { PortRange } from '../config/port-spec.js'
import { HoneytrapError } from '../core/errors.js'

/** The chain that holds every rule the sensor owns in a table; INPUT only jumps to it, so removal never touches other rules. */
export const HONEYTRAP_CHAIN = 'HONEYTRAP'

/** The built-in chain the jumps live in: the sensor serves connections to this host, never forwarded traffic. */
export const PARENT_CHAIN = 'INPUT'

/** The two tables the sensor's rules live in, one chain each. */
export type RulesTable = 'mangle' | 'filter'

/**
 * Where the queue rules live. mangle/INPUT runs before filter/INPUT, and a packet accepted in one table (by the sensor's
 * verdict, or by --queue-bypass while no sensor runs) still meets every other table: the host's own filter rules keep
 * applying to whatever the sensor does not serve. In filter/INPUT, that accept would end the traversal there and skip
 * every host rule below the jump, ufw's included.
 */
export const QUEUE_TABLE: RulesTable = 'mangle'

/**
 * Where the one ACCEPT for the packets the sensor serves lives: filter/INPUT, ahead of the host's rules, matched by the
 * mark the sensor's verdict sets. Only a port the sensor bound gets it; a real service's, an ignored or excluded port's
 * and every packet while no sensor runs go through the host's rules as if the sensor were not there.
 */
export const ACCEPT_TABLE: RulesTable = 'filter'

/** What the operator chose; the CLI and the sensor's config map onto this. */
export interface RuleOptions {
  readonly queue: number // NFQUEUE number, 0 to 65535; the monitor binds the same number
  readonly queueCount: number // queues queue .. queue + queueCount - 1, flows balanced over them (1: just `queue`)
  readonly exclude: readonly PortRange[] // never queued: ssh and anything else that must not depend on the sensor
  readonly interface: string | null // null: every interface; otherwise only packets arriving on this one
  readonly ipv6: boolean // also manage ip6tables
  readonly includeLoopback: boolean // queue traffic on lo too (demos and tests); off by default so local tools are untouched
  readonly mark: number // the mark bits the sensor sets on attempts it serves; the filter rule accepts those only
  readonly skipQueueForServedPorts: boolean // SYNs to a port the sensor already listens on skip the queue
}

/** Everything one family needs, as argument arrays: no shell, no quoting. */
export interface RuleSet {
  readonly family: 4 | 6
  readonly table: RulesTable
  readonly chain: string
  readonly parent: string
  /** The jump's arguments after the parent chain name, e.g. `['-i', 'eth0', '-j', 'HONEYTRAP']`. */
  readonly jump: readonly string[]
  /** The chain's rules in order, each as the arguments after `-A HONEYTRAP`. */
  readonly rules: readonly (readonly string[])[]
}

// IFNAMSIZ is 16 with the terminating NUL; iptables accepts a trailing '+' as a prefix wildcard. A leading '-' is
// refused because iptables would read the name as an option.
const INTERFACE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,14}\+?$/

/**
 * Both of a family's rule sets, in the order install applies them: the ACCEPT for served attempts first, so that it is
 * in place before any packet is queued and marked; remove goes the other way. Pure and deterministic: the same options
 * always give the same rules, which is what lets `install` converge and `status` compare. Throws
 * HT_ERR_CONFIG_INVALID on an option no iptables would accept, so a typo fails before any rule is touched.
 */
export function buildRuleSets(opts: RuleOptions, family: 4 | 6): readonly [RuleSet, RuleSet] {
  return [buildAcceptSet(opts, family), buildQueueSet(opts, family)]
}

/** The filter table's chain: one rule, ACCEPT for packets that carry the sensor's mark. */
export function buildAcceptSet(opts: Pick<RuleOptions, 'mark'>, family: 4 | 6): RuleSet {
  return { family, table: ACCEPT_TABLE, chain: HONEYTRAP_CHAIN, parent: PARENT_CHAIN, jump: ['-j', HONEYTRAP_CHAIN], rules: [buildAcceptRule(opts.mark)] }
}

/** `-m mark --mark 0x400000/0x400000 -j ACCEPT`: the mark bits must all be set, whatever the packet's other bits. */
export function buildAcceptRule(mark: number): string[] {
  if (!Number.isInteger(mark) || mark < 1 || mark > 0xffff_ffff) {
    throw new HoneytrapError('HT_ERR_CONFIG_INVALID', `rules.mark ${String(mark)} is not an integer from 1 to 0xffffffff (one bit, e.g. 0x400000, is best)`)
  }
  const hex = `0x${mark.toString(16)}`
  return ['-m', 'mark', '--mark', `${hex}/${hex}`, '-j', 'ACCEPT']
}

/**
 * A SYN to a listener of the sensor's own skips the queue: the sensor marks its per-port TCP listeners (SO_MARK and
 * IP_TRANSPARENT, src/monitor/served-socket.ts), xt_socket finds the listener a SYN is for and, for a transparent
 * socket only, copies its mark to the packet, and the packet returns to INPUT carrying the mark the filter chain
 * accepts. A real service's socket is not transparent, so its SYNs keep their mark and go on to the queue, where the
 * sensor leaves them to the host's rules.
 */
export function buildServedReturnRule(mark: number): string[] {
  const hex = `0x${mark.toString(16)}`
  return ['-p', 'tcp', '--syn', '-m', 'socket', '--transparent', '--nowildcard', '--restore-skmark', '-m', 'mark', '--mark', `${hex}/${hex}`, '-j', 'RETURN']
}

/** The mangle table's chain: loopback and excluded ports returned, SYNs to the sensor's listeners too, then the two queue rules. */
export function buildQueueSet(opts: RuleOptions, family: 4 | 6): RuleSet {
  if (!Number.isInteger(opts.queue) || opts.queue < 0 || opts.queue > 65_535) {
    throw new HoneytrapError('HT_ERR_CONFIG_INVALID', `queue number ${String(opts.queue)} is not an integer from 0 to 65535`)
  }
  if (!Number.isInteger(opts.queueCount) || opts.queueCount < 1 || opts.queue + opts.queueCount - 1 > 65_535) {
    throw new HoneytrapError('HT_ERR_CONFIG_INVALID', `queue count ${String(opts.queueCount)} from queue ${opts.queue} goes past queue 65535`)
  }
  if (opts.interface !== null && !INTERFACE_NAME.test(opts.interface)) {
    throw new HoneytrapError(
      'HT_ERR_CONFIG_INVALID',
      `interface "${opts.interface}" is not a valid name; expected up to 15 letters, digits or _.@- not starting with - (e.g. "eth0", "ens+")`,
    )
  }
  const jump = opts.interface === null ? ['-j', HONEYTRAP_CHAIN] : ['-i', opts.interface, '-j', HONEYTRAP_CHAIN]
  const rules: string[][] = []
  // With an interface filter on the jump, loopback never reaches the chain, so the RETURN would be dead weight.
  if (!opts.includeLoopback && opts.interface === null) rules.push(['-i', 'lo', '-j', 'RETURN'])
  rules.push(...buildExcludeRules(opts.exclude))
  if (opts.skipQueueForServedPorts) rules.push(buildServedReturnRule(opts.mark))
  rules.push(...buildQueueRules(opts.queue, opts.queueCount))
  buildAcceptRule(opts.mark) // validates the mark even when only this set is wanted
  return { family, table: QUEUE_TABLE, chain: HONEYTRAP_CHAIN, parent: PARENT_CHAIN, jump, rules }
}

/**
 * The two rules that hand new attempts to the sensor. `--queue-bypass` makes the kernel accept instead of drop when
 * no program is bound to the queue, so a stopped or crashed sensor never blackholes the host; conntrack NEW (and
 * `--syn` for TCP) keeps established traffic off the queue, since the sensor only needs the opening packet.
 */
export function buildQueueRules(queue: number, count = 1): string[][] {
  // Several queues (--queue-balance spreads flows over them by hash): the sensor reads each through its own socket,
  // so it takes several SYNs per turn of its event loop and the kernel holds several times 1,024 of them.
  const spread = count > 1 ? ['--queue-balance', `${queue}:${queue + count - 1}`] : ['--queue-num', String(queue)]
  const target = ['-j', 'NFQUEUE', ...spread, '--queue-bypass']
  return [
    ['-p', 'tcp', '--syn', '-m', 'conntrack', '--ctstate', 'NEW', ...target],
    ['-p', 'udp', '-m', 'conntrack', '--ctstate', 'NEW', ...target],
  ]
}

/** One RETURN per excluded range and protocol, in the order given, without duplicates (ssh is often listed twice). */
export function buildExcludeRules(exclude: readonly PortRange[]): string[][] {
  const seen = new Set<string>()
  const rules: string[][] = []
  for (const range of exclude) {
    const dport = range.from === range.to ? String(range.from) : `${range.from}:${range.to}`
    for (const protocol of range.protocols) {
      const key = `${protocol}/${dport}`
      if (seen.has(key)) continue
      seen.add(key)
      rules.push(['-p', protocol, '--dport', dport, '-j', 'RETURN'])
    }
  }
  return rules
}

/** Port ranges that keep the given ssh ports off the queue (TCP only: ssh never uses UDP). */
export function sshExcludeRanges(ports: readonly number[]): PortRange[] {
  const tcp: readonly Protocol[] = ['tcp']
  return [...new Set(ports)].map((port) => ({ protocols: tcp, from: port, to: port }))
}

/** The binary that manages a family's rules. */
export function iptablesBinary(family: 4 | 6): 'iptables' | 'ip6tables' {
  return family === 4 ? 'iptables' : 'ip6tables'
}

/**
 * The rule set as the commands `install` runs, one per line, for `--dry-run` output and the docs. The flush line is
 * always there because install rebuilds the chain's contents on every run.
 */
export function formatRuleSet(set: RuleSet): string[] {
  const bin = `${iptablesBinary(set.family)} -w -t ${set.table}`
  return [
    `${bin} -N ${set.chain}   # only when missing`,
    `${bin} -F ${set.chain}`,
    ...set.rules.map((rule) => `${bin} -A ${set.chain} ${rule.join(' ')}`),
    `${bin} -I ${set.parent} 1 ${set.jump.join(' ')}   # only when missing`,
  ]
}
