import type { Logger } from 'pino'

import { FamilyTables } from './family-tables.js'
import { formatRuleArgs, ruleTarget, type IptablesVersion, type RuleListing } from './iptables-listing.js'
import { ACCEPT_TABLE, buildRuleSets, HONEYTRAP_CHAIN, PARENT_CHAIN, QUEUE_TABLE, type RuleOptions, type RuleSet, type RulesTable } from './iptables-rules.js'
import { findQueue, loadNfnetlinkQueue, type QueueInfo } from './nfqueue-status.js'
import { assertFirewallPrivilege, readProcText } from './rules-exec.js'

/**
 * install / remove / status of the sensor's two chains (mangle/HONEYTRAP with the queue rules, filter/HONEYTRAP with the
 * ACCEPT for served attempts) and their jumps from INPUT, for IPv4 and (when asked and possible) IPv6. Every
 * operation re-reads the kernel's state first and is idempotent, so a crash halfway leaves nothing a re-run cannot fix.
 */

export interface RulesDeps {
  readonly log: Logger
  /** Run every command inside this network namespace (tests, demo); unset when the sensor runs where it guards. */
  readonly netns?: string | undefined
}

/** What install did in one table of one family. */
export interface TableInstallReport {
  readonly table: RulesTable
  readonly createdChain: boolean // the chain did not exist before: the sensor removes it at exit
  readonly addedJump: boolean // the jump did not exist before: the sensor removes it at exit
  readonly removedJumps: number // stale or duplicate jumps deleted (another --interface, a copy added by hand)
  readonly jump: readonly string[] // the jump's arguments after INPUT, to delete exactly that rule later
  readonly ruleCount: number
}

export interface FamilyInstallReport {
  readonly family: 4 | 6
  readonly skipped: string | null // why this family was left alone (IPv6 only), or null
  readonly backend: IptablesVersion
  readonly tables: readonly TableInstallReport[] // in install order: filter (the ACCEPT), then mangle (the queue)
}

export interface InstallReport {
  readonly families: readonly FamilyInstallReport[]
}

export interface TableRemoveReport {
  readonly table: RulesTable
  readonly removedJumps: number
  readonly removedChain: boolean
}

export interface FamilyRemoveReport {
  readonly family: 4 | 6
  readonly skipped: string | null
  readonly tables: readonly TableRemoveReport[] // in removal order: mangle (no more queueing), then filter
}

export interface RemoveReport {
  readonly families: readonly FamilyRemoveReport[]
}

export interface RemoveOptions extends Pick<RuleOptions, 'ipv6'> {
  /** Undo only what this install added (the sensor's exit path); unset removes every trace (the CLI). */
  readonly only?: InstallReport | undefined
}

/**
 * Per family and table: creates the chain when missing, rebuilds its contents (flush + append) so that other options
 * converge, then makes sure exactly one jump with the wanted interface sits in INPUT, inserted at position 1 when
 * absent. A new chain is filled before its jump exists, so packets never meet it half-built; the filter ACCEPT comes
 * before the queue, so a served attempt is never marked without it. Throws HT_ERR_NOT_ROOT without privilege and
 * HT_ERR_RULES naming the failing command; an unusable IPv6 is skipped with a warning.
 */
export async function installRules(opts: RuleOptions, deps: RulesDeps): Promise<InstallReport> {
  await assertFirewallPrivilege('installing the iptables rules')
  const log = deps.log.child({ component: 'iptables' })
  const bySet = familiesFor(opts.ipv6).map((family) => ({ family, sets: buildRuleSets(opts, family) })) // a bad option fails before any change
  const families: FamilyInstallReport[] = []
  for (const { family, sets } of bySet) {
    const backend = await new FamilyTables(family, QUEUE_TABLE, deps).version()
    const tables: TableInstallReport[] = []
    let skipped: string | null = null
    for (const set of sets) {
      const runner = new FamilyTables(family, set.table, deps)
      const probe = await runner.probe({ skipDisabled: true })
      if (probe.listing === null) {
        skipped = probe.skipped
        break
      }
      tables.push(await installSet(runner, probe.listing, set))
    }
    if (skipped !== null) {
      // Only IPv6 is ever skipped, and that happens at its first table, before anything of it was changed.
      log.warn({ family, reason: skipped }, 'ipv6 rules skipped')
      families.push({ family, skipped, backend, tables: [] })
      continue
    }
    const report = { family, skipped: null, backend, tables }
    log.info({ family, backend: report.backend.backend, tables: tables.map((t) => ({ ...t, jump: formatRuleArgs(t.jump) })) }, 'iptables rules installed')
    families.push(report)
  }
  return { families }
}

async function installSet(runner: FamilyTables, listing: RuleListing, set: RuleSet): Promise<TableInstallReport> {
  const createdChain = !listing.chains.includes(set.chain)
  if (createdChain) await runner.must(['-N', set.chain])
  await runner.must(['-F', set.chain])
  for (const rule of set.rules) await runner.must(['-A', set.chain, ...rule])
  // Stale and duplicate jumps go before the -C, so a listing whose wording differs from ours costs a re-insert,
  // never a missing jump.
  let removedJumps = 0
  let keptOne = false
  for (const rule of jumpsIn(listing, PARENT_CHAIN)) {
    if (!keptOne && sameArgs(rule, set.jump)) {
      keptOne = true
    } else {
      await runner.must(['-D', PARENT_CHAIN, ...rule])
      removedJumps++
    }
  }
  const addedJump = !(await runner.check(PARENT_CHAIN, set.jump))
  if (addedJump) await runner.must(['-I', PARENT_CHAIN, '1', ...set.jump])
  return { table: set.table, createdChain, addedJump, removedJumps, jump: set.jump, ruleCount: set.rules.length }
}

/**
 * Per family, mangle first: deletes every jump to the chain (from any chain: copies added by hand count too), then
 * flushes and deletes the chain. Absent rules are not an error, so it can run any number of times. With `only`,
 * undoes just what that install added: the jumps it inserted, and the chains only if it created them.
 */
export async function removeRules(opts: RemoveOptions, deps: RulesDeps): Promise<RemoveReport> {
  await assertFirewallPrivilege('removing the iptables rules')
  const log = deps.log.child({ component: 'iptables' })
  const families: FamilyRemoveReport[] = []
  for (const family of familiesFor(opts.ipv6)) {
    const added = opts.only?.families.find((f) => f.family === family)
    const addedNothing = added === undefined || added.skipped !== null || added.tables.every((t) => !t.addedJump && !t.createdChain)
    if (opts.only !== undefined && addedNothing) {
      families.push({ family, skipped: 'not added by this install', tables: [] })
      continue
    }
    const tables: TableRemoveReport[] = []
    let skipped: string | null = null
    for (const table of [QUEUE_TABLE, ACCEPT_TABLE]) {
      const runner = new FamilyTables(family, table, deps)
      const probe = await runner.probe({ skipDisabled: false })
      if (probe.listing === null) {
        skipped = probe.skipped
        break
      }
      const addedHere = added?.tables.find((t) => t.table === table)
      if (opts.only !== undefined && addedHere === undefined) continue
      tables.push(await removeFrom(runner, probe.listing, addedHere))
    }
    if (skipped !== null) {
      log.warn({ family, reason: skipped }, 'ipv6 rules skipped')
      families.push({ family, skipped, tables: [] })
      continue
    }
    log.info({ family, tables }, 'iptables rules removed')
    families.push({ family, skipped: null, tables })
  }
  return { families }
}

async function removeFrom(runner: FamilyTables, listing: RuleListing, added: TableInstallReport | undefined): Promise<TableRemoveReport> {
  const chainPresent = listing.chains.includes(HONEYTRAP_CHAIN)
  const removedChain = chainPresent && (added === undefined || added.createdChain)
  let removedJumps = 0
  if (removedChain) {
    // The chain cannot be deleted while anything still jumps to it, wherever the jump lives.
    for (const chain of listing.rules.keys()) {
      if (chain === HONEYTRAP_CHAIN) continue
      for (const rule of jumpsIn(listing, chain)) {
        await runner.must(['-D', chain, ...rule])
        removedJumps++
      }
    }
    await runner.must(['-F', HONEYTRAP_CHAIN])
    await runner.must(['-X', HONEYTRAP_CHAIN])
  } else if (added?.addedJump === true && chainPresent && (await runner.check(PARENT_CHAIN, added.jump))) {
    await runner.must(['-D', PARENT_CHAIN, ...added.jump])
    removedJumps++
  }
  return { table: runner.table, removedJumps, removedChain }
}

/** One table's chain and jumps, as the kernel holds them. */
export interface TableStatus {
  readonly table: RulesTable
  readonly chainPresent: boolean
  readonly jumps: readonly string[] // every INPUT rule jumping to the chain, as iptables prints it
  readonly jumpPosition: number | null // 1-based position of the first jump in INPUT; rules above it see packets first
  readonly rules: readonly string[] // the chain's rules, as iptables prints them
  readonly rulesAsExpected: boolean
}

export interface FamilyStatus {
  readonly family: 4 | 6
  readonly skipped: string | null // IPv6 unusable here: nothing else below is meaningful
  readonly backend: IptablesVersion
  readonly tables: readonly TableStatus[] // mangle (the queue), then filter (the ACCEPT of served attempts)
  readonly legacyTables: readonly string[] // legacy x_tables loaded beside nf_tables: their rules apply too, unseen
  readonly notes: readonly string[] // iptables' own warnings about rules it cannot show (nft-only chains, legacy)
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
 * A self-check: for each family and table, whether the chain and a single jump exist and the chain holds the expected rules;
 * for the queue, whether a program is bound and what the kernel's counters say. Reads only, never changes a rule.
 */
export async function rulesStatus(queue: number, deps: StatusOptions): Promise<RulesStatus> {
  await assertFirewallPrivilege('reading the iptables rules')
  const expect = deps.expect ?? null
  const families: FamilyStatus[] = []
  const problems: string[] = []
  for (const family of [4, 6] as const) {
    const status = await familyStatus(family, { queue, expect, deps })
    families.push(status)
    if (family === 4 || expect?.ipv6 !== false) problems.push(...familyProblems(status, expect))
  }
  const [v4, v6] = families.map((f) => (f.skipped === null ? f.backend.backend : 'unknown'))
  if (v4 !== undefined && v6 !== undefined && v4 !== 'unknown' && v6 !== 'unknown' && v4 !== v6) {
    problems.push(
      `iptables uses ${v4} but ip6tables uses ${v6}: point both at the same backend ` +
        '(update-alternatives --config iptables; update-alternatives --config ip6tables)',
    )
  }
  const table = await loadNfnetlinkQueue(deps)
  let bound = true
  for (let q = queue; q < queue + (expect?.queueCount ?? 1); q++) {
    const qi = findQueue(table, q)
    if (qi === null) {
      bound = false
      problems.push(`no program is bound to NFQUEUE ${q}: the sensor is not running (--queue-bypass lets traffic pass)`)
    } else if (qi.dropped > 0 || qi.userDropped > 0) {
      problems.push(
        `queue ${q} dropped ${qi.dropped} packets (queue full) and ${qi.userDropped} (socket buffer full): ` +
          'the sensor is not keeping up',
      )
    }
  }
  const info = findQueue(table, queue)
  const queueStatus: QueueStatus = { queue, moduleLoaded: table.available, bound, info }
  return { families, queue: queueStatus, problems, ok: problems.length === 0 }
}

async function familyStatus(
  family: 4 | 6,
  ctx: { readonly queue: number; readonly expect: RuleOptions | null; readonly deps: RulesDeps },
): Promise<FamilyStatus> {
  const backend = await new FamilyTables(family, QUEUE_TABLE, ctx.deps).version()
  const legacyTables = backend.backend === 'nf_tables' ? await loadLegacyTables(family, ctx.deps) : []
  const tables: TableStatus[] = []
  const notes = new Set<string>()
  for (const table of [QUEUE_TABLE, ACCEPT_TABLE]) {
    const runner = new FamilyTables(family, table, ctx.deps)
    const probe = await runner.probe({ skipDisabled: false })
    if (probe.listing === null) return { family, skipped: probe.skipped, backend, legacyTables, tables: [], notes: [] }
    const listing = probe.listing
    for (const note of listing.notes) notes.add(note)
    const firstJump = (listing.rules.get(PARENT_CHAIN) ?? []).findIndex((rule) => ruleTarget(rule) === HONEYTRAP_CHAIN)
    tables.push({
      table,
      chainPresent: listing.chains.includes(HONEYTRAP_CHAIN),
      jumps: jumpsIn(listing, PARENT_CHAIN).map(formatRuleArgs),
      jumpPosition: firstJump === -1 ? null : firstJump + 1,
      rules: (listing.rules.get(HONEYTRAP_CHAIN) ?? []).map(formatRuleArgs),
      rulesAsExpected: await runner.chainMatches(listing, { queue: ctx.queue, options: ctx.expect }),
    })
  }
  return { family, skipped: null, backend, tables, legacyTables, notes: [...notes] }
}

function familyProblems(s: FamilyStatus, expect: RuleOptions | null): string[] {
  if (s.skipped !== null) return []
  const bin = s.family === 4 ? 'iptables' : 'ip6tables'
  const fix = '`honeytrap-ts iptables install`'
  const problems: string[] = []
  const wantedSets = expect === null ? null : buildRuleSets(expect, s.family)
  for (const t of s.tables) {
    const where = `${bin} -t ${t.table}`
    if (!t.chainPresent) problems.push(`${where}: chain ${HONEYTRAP_CHAIN} is missing; run ${fix}`)
    else if (!t.rulesAsExpected) problems.push(`${where}: chain ${HONEYTRAP_CHAIN} does not hold the expected rules; ${fix} rebuilds it`)
    if (t.jumps.length === 0) problems.push(`${where}: nothing in ${PARENT_CHAIN} jumps to ${HONEYTRAP_CHAIN}, so no packet reaches it`)
    if (t.jumps.length > 1) problems.push(`${where}: ${PARENT_CHAIN} jumps to ${HONEYTRAP_CHAIN} ${t.jumps.length} times; ${fix} keeps one`)
    const wanted = wantedSets?.find((set) => set.table === t.table)
    if (wanted !== undefined && t.jumps.length > 0 && !t.jumps.includes(formatRuleArgs(wanted.jump))) {
      problems.push(`${where}: the jump is "${t.jumps[0] ?? ''}", expected "${formatRuleArgs(wanted.jump)}"`)
    }
  }
  if (s.legacyTables.length > 0) {
    problems.push(
      `${bin}: legacy tables are loaded too (${s.legacyTables.join(', ')}); their rules also apply and the ` +
        `nf_tables tools do not show them: inspect with ${bin}-legacy -S`,
    )
  }
  for (const note of s.notes) problems.push(`${bin}: ${note}`)
  return problems
}

/** Names of legacy x_tables tables in use in this namespace (empty when the legacy modules are not loaded). */
async function loadLegacyTables(family: 4 | 6, deps: RulesDeps): Promise<string[]> {
  const text = await readProcText(family === 4 ? '/proc/net/ip_tables_names' : '/proc/net/ip6_tables_names', deps)
  return (text ?? '').split('\n').map((l) => l.trim()).filter((l) => l !== '')
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
