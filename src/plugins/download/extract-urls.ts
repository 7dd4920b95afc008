/**
 * Finds fetchable URLs in attacker bytes: the dropper commands of an exploit (`wget http://x/y -O-|sh`,
 * `curl -s http://x;chmod`), links in HTML, URLs inside JSON (`http:\/\/x\/y`) and percent-encoded ones in query
 * strings (`url=http%3A%2F%2Fx%2Fy`). Pure: no I/O, never throws on any input, bounded in work and output.
 */

export interface ExtractUrlsOptions {
  readonly schemes: readonly string[] // lowercase scheme names to look for, e.g. ['http', 'https']
  readonly maxUrls: number // distinct URLs returned at most; scanning stops once this many are found
  readonly maxUrlChars: number // a longer URL (as found or once normalised) is ignored, not truncated
}

export interface ExtractedUrl {
  /** The WHATWG-normalised URL (`new URL(...).href`) without credentials or fragment: what a downloader fetches. */
  readonly url: string
  /** The URL carried `user:password@`: removed, because the sensor never authenticates to an attacker's server. */
  readonly credentialsRemoved: boolean
}

// A payload full of near-URLs ("http://http://http://...") must not cost a URL parse per byte: past this many
// candidates the rest of the subject is not looked at.
const MAX_CANDIDATES = 4_096

// What ends a URL: whitespace, quotes, shell operators and separators, C0 controls, DEL and every non-ASCII byte
// (a URL on the wire is ASCII; a high byte means the text around it is binary or another encoding).
const STOP_CHARS = new Set([...'"\'`;|&<>'].map((c) => c.charCodeAt(0)))

// Closing brackets at the end of a URL are usually the text's, not the URL's (`$(wget http://x/y)`), unless the URL
// opened them itself; trailing sentence punctuation likewise.
const CLOSERS: Readonly<Record<string, string>> = { ')': '(', ']': '[', '}': '{' }
const TRAILING_PUNCTUATION = new Set(['.', ',', ':', '!'])

// The host a downloader may look up: a DNS name (what the WHATWG parser leaves of it, lowercased, punycoded) or a
// bracketed IPv6 literal. Anything else the parser accepts ("${host}", "*") is template text, not a server.
const HOST = /^(?:[a-z0-9_-]+\.)*[a-z0-9_-]+\.?$|^\[[0-9a-f:.]+\]$/

type Separator = 'plain' | 'json' | 'percent'

/** The http(s) URLs in `data` (read as latin1), in order of appearance, distinct, at most `options.maxUrls`. */
export function extractUrls(data: Buffer, options: ExtractUrlsOptions): readonly ExtractedUrl[] {
  const schemes = options.schemes.filter((s) => /^[a-z][a-z0-9+.-]{0,31}$/.test(s)).sort((a, b) => b.length - a.length)
  if (schemes.length === 0 || options.maxUrls < 1 || data.length === 0) return []
  const text = data.toString('latin1')
  // Longest scheme first, so "https://" is never read as "http" + "s://". No nested quantifiers: linear time.
  const pattern = new RegExp(`(${schemes.map(escapeRegExp).join('|')})(:\\/\\/|:\\\\\\/\\\\\\/|%3a%2f%2f)`, 'gi')
  const found: ExtractedUrl[] = []
  const seen = new Set<string>()
  const stops = createStopFinder(text, options.maxUrlChars)
  let candidates = 0
  for (let match = pattern.exec(text); match !== null; match = pattern.exec(text)) {
    if (++candidates > MAX_CANDIDATES || found.length >= options.maxUrls) break
    const scheme = (match[1] ?? '').toLowerCase()
    const separator = separatorOf(match[2] ?? '')
    const restStart = match.index + match[0].length
    const stopAt = stops(restStart)
    // exec resumes right after the separator, not after the URL: one inside another's query string is found too.
    if (stopAt - restStart > options.maxUrlChars) continue
    const rest = decodeRest(text.slice(restStart, stopAt), separator)
    const result = normalise(`${scheme}://${trimTrailing(rest)}`, scheme, options.maxUrlChars)
    if (result === null || seen.has(result.url)) continue
    seen.add(result.url)
    found.push(result)
  }
  return found
}

/**
 * `url` made safe to store and show: control bytes, spaces and non-ASCII percent-encoded (as UTF-8), cut to
 * `maxChars`. Never throws; for any text, not only what extractUrls returned (FTP and TFTP paths, Location headers).
 */
export function sanitizeUrl(url: string, maxChars = 2048): string {
  let out = ''
  for (const char of url) {
    const code = char.codePointAt(0) ?? 0
    const piece = code > 0x20 && code < 0x7f ? char : percentEncode(char)
    if (out.length + piece.length > maxChars) break
    out += piece
  }
  return out
}

function separatorOf(text: string): Separator {
  if (text === '://') return 'plain'
  return text.startsWith('%') ? 'percent' : 'json'
}

/**
 * Returns a function giving, for a start index, the index of the first stop character at or after it (or the text's
 * end), or some index past start + maxChars when the run is longer than that. Starts must not decrease. Each
 * character is looked at once overall, so many candidates in one long run cost no more than the run.
 */
function createStopFinder(text: string, maxChars: number): (from: number) => number {
  let stop = -1 // the last stop found (a real one, or the text's end)
  let scanned = 0 // every character from the current run's start up to here is known not to be a stop
  return (from) => {
    if (stop >= from) return stop
    const end = Math.min(text.length, from + maxChars + 1)
    let i = Math.max(from, scanned)
    while (i < end && !isStop(text.charCodeAt(i))) i++
    scanned = i
    if (i < end || i === text.length) stop = i
    return i
  }
}

function isStop(code: number): boolean {
  // Whitespace, C0 controls, DEL and every non-ASCII character, then quotes and shell operators.
  return code <= 0x20 || code >= 0x7f || STOP_CHARS.has(code)
}

function decodeRest(rest: string, separator: Separator): string {
  if (separator === 'json') return rest.replaceAll('\\/', '/')
  if (separator === 'plain') return rest
  // One level of percent-decoding, byte by byte as latin1 (decodeURIComponent throws on bad UTF-8), then cut again:
  // a decoded space or quote ends the URL as a literal one would.
  const decoded = rest.replace(/%([0-9a-fA-F]{2})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)))
  let stop = 0
  while (stop < decoded.length && !isStop(decoded.charCodeAt(stop))) stop++
  return decoded.slice(0, stop)
}

function trimTrailing(rest: string): string {
  const counts = new Map<string, number>()
  for (const char of rest) if ('()[]{}'.includes(char)) counts.set(char, (counts.get(char) ?? 0) + 1)
  let end = rest.length
  while (end > 0) {
    const last = rest.charAt(end - 1)
    const opener = CLOSERS[last]
    const unbalanced = opener !== undefined && (counts.get(last) ?? 0) > (counts.get(opener) ?? 0)
    if (!TRAILING_PUNCTUATION.has(last) && !unbalanced) break
    if (unbalanced) counts.set(last, (counts.get(last) ?? 0) - 1)
    end--
  }
  return rest.slice(0, end)
}

function normalise(candidate: string, scheme: string, maxChars: number): ExtractedUrl | null {
  let url: URL
  try {
    url = new URL(candidate)
  } catch {
    return null // not a URL: attacker text that merely contains "http://"
  }
  if (url.protocol !== `${scheme}:` || !HOST.test(url.hostname)) return null
  const credentialsRemoved = url.username !== '' || url.password !== ''
  url.username = ''
  url.password = ''
  url.hash = '' // never sent to the server; kept, it would make one download look like several
  const href = url.href
  if (href.length > maxChars) return null
  return { url: href, credentialsRemoved }
}

function percentEncode(char: string): string {
  let out = ''
  for (const byte of Buffer.from(char, 'utf8')) out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
  return out
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
