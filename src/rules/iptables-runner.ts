import type { Logger } from 'pino'

import { FamilyTables } from './iptables-command.js'
import { ruleTarget, type IptablesVersion, type RuleListing } from './iptables-listing.js'
import { buildQueueRules, buildRuleSet, HONEYTRAP_CHAIN, PARENT_CHAIN, type RuleOptions } from './iptables-rules.js'
import { findQueue, loadNfnetlinkQueue, type QueueInfo } from './nfqueue-status.js'
import { assertFirewallPrivilege, readProcText } from './rules-exec.js'

/**
 * install / remove / status of the HONEYTRAP chain and its jump, for IPv4 and (when asked and possible) IPv6. Every
 * operation is idempotent and re-reads the kernel's state first, so a crash halfway leaves nothing a re-run cannot fix.
 */

export interface RulesDeps {
  readonly log: Logger
  /** Run every command inside this network namespace (tests, demo); unset when the sensor runs where it guards. */
  readonly netns?: string | undefined
}

export interface FamilyInstallReport {
  readonly family: 4 | 6
  readonly skipped: string | null // why this family was left alone (IPv6 only), or null
  readonly backend: IptablesVersion
  readonly createdChain: boolean // the chain did not exist before: remove it at exit
  readonly addedJump: boolean // the jump did not exist before: remove it at exit
  readonly removedJumps: number // stale or duplicate jumps deleted (another --interface, a copy added by hand)
  readonly jump: readonly string[] // the jump's arguments after INPUT, to delete exactly that rule later
  readonly ruleCount: number
}

export interface InstallReport {
  readonly families: readonly FamilyInstallReport[]
}

export interface FamilyRemoveReport {
  readonly family: 4 | 6
  readonly skipped: string | null
  readonly removedJumps: number
  readonly removedChain: boolean
}

export interface RemoveReport {
  readonly families: readonly FamilyRemoveReport[]
}

export interface RemoveOptions extends Pick<RuleOptions, 'ipv6'> {
  /** Undo only what this install added (the sensor's exit path); unset removes every trace (the CLI). */
  readonly only?: InstallReport | undefined
}

/**
 * Creates the chain when missing, rebuilds its contents (flush + append) so different options converge, then makes
 * sure exactly one jump with the wanted interface sits in INPUT, inserted at position 1 when absent. The chain is
 * filled before the jump exists, so packets never meet a half-built chain for the first time. Throws HT_ERR_NOT_ROOT
 * without privilege, HT_ERR_RULES naming the failing command; an unusable IPv6 is skipped with a warning.
 */
export async function installRules(opts: RuleOptions, deps: RulesDeps): Promise<InstallReport> {
  await assertFirewallPrivilege('installing the iptables rules')
  const log = deps.log.child({ component: 'iptables' })
  const families: FamilyInstallReport[] = []
  for (const family of familiesFor(opts.ipv6)) {
    const set = buildRuleSet(opts, family) // first, so a bad option fails before anything is touched
    const tables = new FamilyTables(family, deps)
    const backend = await tables.version()
    const probe = await tables.probe({ skipDisabled: true })
    if (probe.listing === null) {
      log.warn({ family, reason: probe.skipped }, 'ipv6 rules skipped')
      families.push({ family, skipped: probe.skipped, backend, createdChain: false, addedJump: false, removedJumps: 0, jump: set.jump, ruleCount: 0 })
      continue
    }
    const createdChain = !probe.listing.chains.includes(set.chain)
    if (createdChain) await tables.must(['-N', set.chain])
    await tables.must(['-F', set.chain])
    for (const rule of set.rules) await tables.must(['-A', set.chain, ...rule])

    // Stale jumps go first, so a listing whose wording differs from ours costs a re-insert, never a missing jump.
    let removedJumps = 0
    let keptOne = false
    for (const rule of jumpsIn(probe.listing, PARENT_CHAIN)) {
      if (!keptOne && sameArgs(rule, set.jump)) {
        keptOne = true
        continue
      }
      await tables.must(['-D', PARENT_CHAIN, ...rule])
      removedJumps++
    }
    const addedJump = !(await tables.check(PARENT_CHAIN, set.jump))
    if (addedJump) await tables.must(['-I', PARENT_CHAIN, '1', ...set.jump])
    log.info({ family, backend: backend.backend, createdChain, addedJump, removedJumps, rules: set.rules.length }, 'iptables rules installed')
    families.push({ family, skipped: null, backend, createdChain, addedJump, removedJumps, jump: set.jump, ruleCount: set.rules.length })
  }
  return { families }
}

/**
 * Deletes every jump to the chain (from any chain: copies added by hand count too), then flushes and deletes the
 * chain. Absent rules are not an error, so it can run any number of times. With `only`, undoes just what that
 * install added: the one jump it inserted, and the chain only if it created it.
 */
export async function removeRules(opts: RemoveOptions, deps: RulesDeps): Promise<RemoveReport> {
  await assertFirewallPrivilege('removing the iptables rules')
  const log = deps.log.child({ component: 'iptables' })
  const families: FamilyRemoveReport[] = []
  for (const family of familiesFor(opts.ipv6)) {
    const added = opts.only?.families.find((f) => f.family === family)
    if (opts.only !== undefined && (added === undefined || added.skipped !== null || (!added.addedJump && !added.createdChain))) {
      families.push({ family, skipped: 'not added by this install', removedJumps: 0, removedChain: false })
      continue
    }
    const tables = new FamilyTables(family, deps)
    const probe = await tables.probe({ skipDisabled: false })
    if (probe.listing === null) {
      log.warn({ family, reason: probe.skipped }, 'ipv6 rules skipped')
      families.push({ family, skipped: probe.skipped, removedJumps: 0, removedChain: false })
      continue
    }
    const chainPresent = probe.listing.chains.includes(HONEYTRAP_CHAIN)
    const removeChain = chainPresent && (added === undefined || added.createdChain)
    let removedJumps = 0
    if (removeChain) {
      // The chain cannot be deleted while anything still jumps to it, wherever the jump lives.
      for (const chain of probe.listing.rules.keys()) {
        if (chain === HONEYTRAP_CHAIN) continue
        for (const rule of jumpsIn(probe.listing, chain)) {
          await tables.must(['-D', chain, ...rule])
          removedJumps++
        }
      }
      await tables.must(['-F', HONEYTRAP_CHAIN])
      await tables.must(['-X', HONEYTRAP_CHAIN])
    } else if (added !== undefined && added.addedJump && chainPresent && (await tables.check(PARENT_CHAIN, added.jump))) {
      await tables.must(['-D', PARENT_CHAIN, ...added.jump])
      removedJumps++
    }
    log.info({ family, removedJumps, removedChain: removeChain }, 'iptables rules removed')
    families.push({ family, skipped: null, removedJumps, removedChain: removeChain })
  }
  return { families }
}

function familiesFor(ipv6: boolean): (4 | 6)[] {
  return ipv6 ? [4, 6] : [4]
}

/** Rules of `chain` whose target is the HONEYTRAP chain, as argument tokens ready for `-D chain ...`. */
function jumpsIn(listing: RuleListing, chain: string): (readonly string[])[] {
  return (listing.rules.get(chain) ?? []).filter((rule) => ruleTarget(rule) === HONEYTRAP_CHAIN)
}

function sameArgs(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i])
}

/**
 * Whether the chain holds exactly the expected rules: same count, same targets in the same order, and each one
 * confirmed by `iptables -C` (which compares what the kernel holds, whatever the backend prints). Without expected
 * options (`status` from the CLI knows only the queue), it checks the shape: RETURNs, then the two queue rules.
 */
export async function chainMatches(
  tables: FamilyTables,
  listing: RuleListing,
  expect: { readonly queue: number; readonly options: RuleOptions | null },
): Promise<boolean> {
  if (!listing.chains.includes(HONEYTRAP_CHAIN)) return false
  const actual = listing.rules.get(HONEYTRAP_CHAIN) ?? []
  if (expect.options !== null) {
    const expected = buildRuleSet(expect.options, tables.family).rules
    if (actual.length !== expected.length) return false
    if (!expected.every((rule, i) => ruleTarget(rule) === ruleTarget(actual[i] ?? []))) return false
    for (const rule of expected) if (!(await tables.check(HONEYTRAP_CHAIN, rule))) return false
    return true
  }
  const queueRules = buildQueueRules(expect.queue)
  if (actual.length < queueRules.length) return false
  const returns = actual.slice(0, actual.length - queueRules.length)
  const tail = actual.slice(actual.length - queueRules.length)
  if (!returns.every((rule) => ruleTarget(rule) === 'RETURN')) return false
  if (!tail.every((rule) => ruleTarget(rule) === 'NFQUEUE')) return false
  for (const rule of queueRules) if (!(await tables.check(HONEYTRAP_CHAIN, rule))) return false
  return true
}

export interface FamilyStatus {
  readonly family: 4 | 6
  readonly skipped: string | null // IPv6 unusable here: nothing else below is meaningful
  readonly backend: IptablesVersion
  readonly chainPresent: boolean
  readonly jumps: readonly string[] // every INPUT rule jumping to the chain, as iptables prints it
  readonly jumpPosition: number | null // 1-based position of the first jump in INPUT; rules above it see packets first
  readonly rules: readonly string[] // the chain's rules, as iptables prints them
  readonly rulesAsExpected: boolean
  readonly legacyTables: readonly string[] // legacy x_tables loaded beside nf_tables: rules there apply too, unseen
}

export interface QueueStatus {
  readonly queue: number
  readonly moduleLoaded: boolean // /proc/net/netfilter/nfnetlink_queue exists
  readonly bound: boolean // a program (the sensor) holds the queue
  readonly info: QueueInfo | null
}

export interface RulesStatus {
  readonly families: readonly FamilyStatus[]
  readonly queue: QueueStatus
  readonly problems: readonly string[] // one sentence each, with the fix when there is one
  readonly ok: boolean // no problems: rules in place and the queue bound
}

export interface StatusOptions extends RulesDeps {
  /** The options the rules should match; without them only the shape and the queue number are checked. */
  readonly expect?: RuleOptions | undefined
}

/**
 * A self-check: for each family, whether the chain and a single jump exist and the chain holds the expected rules;
 * for the queue, whether a program is bound and what the kernel's counters say. Reads only, never changes a rule.
 */
export async function rulesStatus(queue: number, deps: StatusOptions): Promise<RulesStatus> {
  await assertFirewallPrivilege('reading the iptables rules')
  const problems: string[] = []
  const families: FamilyStatus[] = []
  for (const family of [4, 6] as const) {
    const tables = new FamilyTables(family, deps)
    const backend = await tables.version()
    const probe = await tables.probe({ skipDisabled: false })
    const legacyTables = backend.backend === 'nf_tables' ? await loadLegacyTables(family, deps) : []
    if (probe.listing === null) {
      families.push({ family, skipped: probe.skipped, backend, chainPresent: false, jumps: [], jumpPosition: null, rules: [], rulesAsExpected: false, legacyTables })
      continue
    }
    const listing = probe.listing
    const chainPresent = listing.chains.includes(HONEYTRAP_CHAIN)
    const parentRules = listing.rules.get(PARENT_CHAIN) ?? []
    const firstJump = parentRules.findIndex((rule) => ruleTarget(rule) === HONEYTRAP_CHAIN)
    const status: FamilyStatus = {
      family,
      skipped: null,
      backend,
      chainPresent,
      jumps: jumpsIn(listing, PARENT_CHAIN).map(formatArgs),
      jumpPosition: firstJump === -1 ? null : firstJump + 1,
      rules: (listing.rules.get(HONEYTRAP_CHAIN) ?? []).map(formatArgs),
      rulesAsExpected: await chainMatches(tables, listing, { queue, options: deps.expect ?? null }),
      legacyTables,
    }
    families.push(status)
    if (family === 4 || deps.expect?.ipv6 !== false) problems.push(...familyProblems(status, deps.expect ?? null))
  }
  const [v4, v6] = families
  if (v4 && v6 && v6.skipped === null && v4.backend.backend !== 'unknown' && v6.backend.backend !== 'unknown' && v4.backend.backend !== v6.backend.backend) {
    problems.push(
      `iptables uses ${v4.backend.backend} but ip6tables uses ${v6.backend.backend}: point both at the same backend ` +
        '(update-alternatives --config iptables; update-alternatives --config ip6tables)',
    )
  }
  const table = await loadNfnetlinkQueue(deps)
  const info = findQueue(table, queue)
  const queueStatus: QueueStatus = { queue, moduleLoaded: table.available, bound: info !== null, info }
  if (info === null) {
    problems.push(`no program is bound to NFQUEUE ${queue}: the sensor is not running (traffic passes untouched thanks to --queue-bypass)`)
  } else if (info.dropped > 0 || info.userDropped > 0) {
    problems.push(`queue ${queue} dropped ${info.dropped} packets (queue full) and ${info.userDropped} (socket buffer full): the sensor is not keeping up`)
  }
  return { families, queue: queueStatus, problems, ok: problems.length === 0 }
}

function familyProblems(s: FamilyStatus, expect: RuleOptions | null): string[] {
  const bin = s.family === 4 ? 'iptables' : 'ip6tables'
  const problems: string[] = []
  if (s.skipped !== null) return problems
  if (!s.chainPresent) problems.push(`${bin}: chain ${HONEYTRAP_CHAIN} is missing; run \`honeytrap-ts iptables install\``)
  else if (!s.rulesAsExpected) problems.push(`${bin}: chain ${HONEYTRAP_CHAIN} does not hold the expected rules; run \`honeytrap-ts iptables install\` to rebuild it`)
  if (s.jumps.length === 0) problems.push(`${bin}: nothing in ${PARENT_CHAIN} jumps to ${HONEYTRAP_CHAIN}, so no packet reaches it`)
  if (s.jumps.length > 1) problems.push(`${bin}: ${PARENT_CHAIN} jumps to ${HONEYTRAP_CHAIN} ${s.jumps.length} times; \`honeytrap-ts iptables install\` keeps one`)
  if (expect !== null && s.jumps.length > 0) {
    const wanted = formatArgs(buildRuleSet(expect, s.family).jump)
    if (!s.jumps.includes(wanted)) problems.push(`${bin}: the jump is "${s.jumps[0] ?? ''}", expected "${wanted}"`)
  }
  if (s.legacyTables.length > 0) {
    problems.push(
      `${bin}: legacy tables are loaded too (${s.legacyTables.join(', ')}): their rules also apply and iptables-nft does not ` +
        `show them; inspect with ${bin}-legacy -S`,
    )
  }
  return problems
}

/** Names of legacy x_tables tables in use in this namespace (empty when the legacy modules are not loaded). */
async function loadLegacyTables(family: 4 | 6, deps: RulesDeps): Promise<string[]> {
  const text = await readProcText(family === 4 ? '/proc/net/ip_tables_names' : '/proc/net/ip6_tables_names', deps)
  return (text ?? '').split('\n').map((l) => l.trim()).filter((l) => l !== '')
}

/** Arguments as one line; tokens with spaces are double-quoted the way iptables itself prints them. */
function formatArgs(args: readonly string[]): string {
  return args.map((a) => (/[\s"\\]/.test(a) || a === '' ? `"${a.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"` : a)).join(' ')
}
