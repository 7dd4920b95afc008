/**
 * The printable text of an attack string, as the full-text index (attack_text, migration 005) holds it: what
 * `strings(1)` would show an analyst. Runs of at least MIN_RUN printable ASCII characters (tab, CR and LF included),
 * in order, separated by a newline; and the same for UTF-16LE text (a printable byte followed by a zero byte), which is
 * how Windows payloads (PowerShell, SMB names) carry their commands. Shorter runs are the noise binary data is full of
 * and would only fill the index with two-letter tokens.
 *
 * Bounded: at most `maxChars` characters come out, whatever the payload, so one megabyte of text costs the index a
 * bounded row. Pure, and never throws: it runs inside the writer's transaction.
 */
export const MIN_RUN = 4
export const DEFAULT_MAX_TEXT_CHARS = 64 * 1024

// Runs over the payload read as latin1 (one character per byte), so V8's regular expression engine does the scan.
const ASCII_RUNS = new RegExp(`[\\t\\n\\r\\x20-\\x7e]{${MIN_RUN},}`, 'g')
const WIDE_RUNS = new RegExp(`(?:[\\t\\n\\r\\x20-\\x7e]\\x00){${MIN_RUN},}`, 'g')
const WIDE_HINT = /[\t\n\r\x20-\x7e]\x00/

export function printableText(payload: Uint8Array, maxChars: number = DEFAULT_MAX_TEXT_CHARS): string {
  return printableRuns(payload, maxChars).join('\n')
}

/** The runs themselves, ASCII ones first, in payload order; together at most `maxChars` characters. */
export function printableRuns(payload: Uint8Array, maxChars: number = DEFAULT_MAX_TEXT_CHARS): string[] {
  if (payload.length < MIN_RUN || maxChars <= 0) return []
  const text = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('latin1')
  const parts: string[] = []
  const budget = collect(text, ASCII_RUNS, 1, maxChars, parts)
  // The UTF-16LE pass only where there can be such text: a zero byte after a printable one.
  if (budget > 0 && WIDE_HINT.test(text)) collect(text, WIDE_RUNS, 2, budget, parts)
  return parts
}

/** Appends the runs `pattern` finds (of `width` bytes a character) until `budget` characters are used; returns the rest. */
function collect(text: string, pattern: RegExp, width: 1 | 2, budget: number, parts: string[]): number {
  pattern.lastIndex = 0
  for (let match = pattern.exec(text); match !== null && budget > 0; match = pattern.exec(text)) {
    let run = match[0]
    if (width === 2) run = run.replaceAll('\x00', '')
    if (run.length > budget) run = run.slice(0, budget)
    parts.push(run)
    budget -= run.length
  }
  return budget
}
