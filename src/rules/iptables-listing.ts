/**
 * Pure parsers for what iptables prints: `iptables -S` listings and `iptables -V`. Kept apart from the runner so the
 * quoting and format rules are tested on fixture text, and the runner only decides what to do with the result.
 */

export type IptablesBackend = 'nf_tables' | 'legacy' | 'unknown'

export interface IptablesVersion {
  readonly version: string // e.g. "1.8.9"; '' when unparsable
  readonly backend: IptablesBackend
}

/** One `iptables -t filter -S` listing: user chains and every chain's rules in order, each as argument tokens. */
export interface RuleListing {
  readonly chains: readonly string[] // user-defined chains (`-N` lines), in listing order
  readonly rules: ReadonlyMap<string, readonly (readonly string[])[]> // chain -> arguments after `-A CHAIN`
  /** iptables-nft's own `# Warning: ...` / `# Table ... incompatible` lines: another tool's rules it cannot show. */
  readonly notes: readonly string[]
}

const VERSION_LINE = /^ip6?tables(?:-\w+)? v(\d[\w.]*)(?:\s+\((nf_tables|legacy)\))?/m

/**
 * Reads the backend from `iptables -V` ("iptables v1.8.9 (nf_tables)"). Versions before 1.8 print no backend and
 * only had the legacy one, so a bare version means legacy; anything else is `unknown` rather than a guess.
 */
export function parseIptablesVersion(text: string): IptablesVersion {
  const m = VERSION_LINE.exec(text.trim())
  if (!m) return { version: '', backend: 'unknown' }
  const version = m[1] ?? ''
  const backend = m[2]
  if (backend === 'nf_tables' || backend === 'legacy') return { version, backend }
  return { version, backend: isBefore18(version) ? 'legacy' : 'unknown' }
}

function isBefore18(version: string): boolean {
  const [major, minor] = version.split('.').map(Number)
  if (major === undefined || minor === undefined || Number.isNaN(major) || Number.isNaN(minor)) return false
  return major < 1 || (major === 1 && minor < 8)
}

/**
 * Splits one listing line into arguments the way iptables quoted it: an argument with spaces or quotes is printed in
 * double quotes with `"` and `\` escaped by a backslash (comments are the usual case). The tokens can be passed back
 * to `iptables -D` unchanged, which is how hand-made copies of the jump are removed without deleting by number.
 */
export function tokenizeRuleLine(line: string): string[] {
  const tokens: string[] = []
  let current = ''
  let inToken = false
  let quoted = false
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!
    if (quoted) {
      if (ch === '\\' && i + 1 < line.length) {
        current += line[++i]!
      } else if (ch === '"') {
        quoted = false
      } else {
        current += ch
      }
    } else if (ch === '"') {
      quoted = true
      inToken = true
    } else if (ch === ' ' || ch === '\t') {
      if (inToken) tokens.push(current)
      current = ''
      inToken = false
    } else {
      current += ch
      inToken = true
    }
  }
  if (inToken) tokens.push(current)
  return tokens
}

/**
 * Parses `iptables -S` output for one table. Policy lines are skipped; `#` lines are kept as notes (iptables-nft
 * uses them to say legacy tables or nft-only chains exist); anything else unknown is ignored, never fatal.
 */
export function parseRuleListing(text: string): RuleListing {
  const chains: string[] = []
  const rules = new Map<string, string[][]>()
  const notes: string[] = []
  for (const raw of text.split('\n')) {
    if (raw.startsWith('#')) {
      notes.push(raw.replace(/^#\s*/, '').trim())
      continue
    }
    const tokens = tokenizeRuleLine(raw.trim())
    const [flag, chain] = tokens
    if (chain === undefined) continue
    if (flag === '-N') {
      chains.push(chain)
    } else if (flag === '-A') {
      const list = rules.get(chain) ?? []
      list.push(tokens.slice(2))
      rules.set(chain, list)
    }
  }
  return { chains, rules, notes }
}

/** The target of a rule (`-j X` or `-g X`), or null when it only counts packets. */
export function ruleTarget(rule: readonly string[]): string | null {
  for (let i = 0; i < rule.length - 1; i++) {
    if (rule[i] === '-j' || rule[i] === '--jump' || rule[i] === '-g' || rule[i] === '--goto') return rule[i + 1] ?? null
  }
  return null
}

/** Arguments as one listing-style line: the inverse of tokenizeRuleLine, quoting the way iptables does. Pure. */
export function formatRuleArgs(args: readonly string[]): string {
  return args.map((a) => (a === '' || /[\s"\\]/.test(a) ? `"${a.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"` : a)).join(' ')
}
