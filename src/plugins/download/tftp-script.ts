import { isIP } from 'node:net'

/** One file a script asks a TFTP client to fetch. */
export interface TftpJob {
  readonly host: string // lowercase name, IPv4 or IPv6 address (no brackets)
  readonly port: number // 69 unless the command or URL names another
  readonly file: string // the remote name as bytes in latin1 (one char per byte), sent as is in the RRQ
}

/** The bounds of parseTftpScript: attacker bytes decide how much work it does only up to these. */
export const TFTP_SCRIPT_LIMITS = {
  maxScanBytes: 1024 * 1024, // bytes of a subject looked at; a dropper script is far smaller
  maxCommandChars: 4096, // a longer command (or line) is skipped whole: no real tftp call is that long
  maxWords: 64, // words in one command, same reason
  maxFileChars: 255, // a remote name longer than this is refused (it must fit a 512-byte RRQ with room to spare)
  maxJobs: 16, // jobs returned at most, whatever the options ask
} as const

export const TFTP_DEFAULT_PORT = 69

// Characters that end a command when unquoted: cmd.exe and sh chains (&, &&, |, ||, ;), subshells and newlines.
const COMMAND_END = new Set(['\n', '\r', ';', '&', '|', '(', ')', '`'])
const WHITESPACE = new Set([' ', '\t', '\v', '\f'])
// Short options of busybox and tftp-hpa that take a value (-r FILE, -l FILE, -b SIZE, -m MODE, ...).
const OPTIONS_WITH_VALUE = new Set(['r', 'l', 'b', 'm', 'R', 'w', 'B', 't', 'T'])
const URL_PATTERN = /tftp:\/\/(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.-]{1,253})(?::(\d{1,5}))?\/([^\s"'<>|&;`()\x00-\x1f\x7f]{1,1024})/gi
const LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/

/**
 * The TFTP downloads a payload asks for: `tftp -i HOST GET FILE [LOCAL]` (Windows), `tftp -g -r FILE HOST [PORT]`
 * (busybox, options in any order), `tftp HOST [PORT] -c get FILE` (tftp-hpa) inside cmd or sh chains, and
 * `tftp://host[:port]/file` URLs. Pure and bounded by TFTP_SCRIPT_LIMITS; never throws.
 */
export function parseTftpScript(data: Buffer, options: { readonly maxJobs?: number } = {}): TftpJob[] {
  const maxJobs = Math.max(0, Math.min(options.maxJobs ?? TFTP_SCRIPT_LIMITS.maxJobs, TFTP_SCRIPT_LIMITS.maxJobs))
  const text = data.subarray(0, TFTP_SCRIPT_LIMITS.maxScanBytes).toString('latin1')
  if (maxJobs === 0 || !/tftp/i.test(text)) return []
  const found = [...commandJobs(text, maxJobs), ...urlJobs(text, maxJobs)].sort((a, b) => a.at - b.at)
  const seen = new Set<string>()
  const jobs: TftpJob[] = []
  for (const { job } of found) {
    const key = keyOf(job)
    if (seen.has(key)) continue
    seen.add(key)
    jobs.push(job)
    if (jobs.length === maxJobs) break
  }
  return jobs
}

interface Found {
  readonly at: number // offset in the text, to keep the script's order
  readonly job: TftpJob
}

/** Splits the text into commands (quotes respected within a line) and reads the tftp calls among them. */
function commandJobs(text: string, maxJobs: number): Found[] {
  const found: Found[] = []
  const keys = new Set<string>()
  let words: string[] = []
  let word: string | null = null
  let quote: string | null = null
  let start = 0
  let chars = 0
  let overlong = false
  let dropNextWord = false // the target of a redirection (`> nul`, `2>/dev/null`) is not an argument

  function endWord(): void {
    if (word !== null && !dropNextWord) words.push(word)
    else if (word !== null) dropNextWord = false
    word = null
    if (words.length > TFTP_SCRIPT_LIMITS.maxWords) overlong = true
  }
  function endCommand(at: number): void {
    endWord()
    if (!overlong && found.length < maxJobs) {
      const job = jobOfCommand(words)
      if (job !== null && !keys.has(keyOf(job))) {
        keys.add(keyOf(job))
        found.push({ at: start, job })
      }
    }
    words = []
    quote = null
    chars = 0
    overlong = false
    dropNextWord = false
    start = at + 1
  }

  for (let i = 0; i < text.length && found.length < maxJobs; i++) {
    const c = text[i] as string
    // A newline ends a command even inside quotes: one stray quote must not swallow the rest of the script.
    if (c === '\n' || c === '\r' || (quote === null && COMMAND_END.has(c))) {
      endCommand(i)
      continue
    }
    if (overlong) continue
    if (++chars > TFTP_SCRIPT_LIMITS.maxCommandChars) {
      overlong = true
      continue
    }
    if (quote !== null) {
      if (c === quote) quote = null
      else word = (word ?? '') + c
    } else if (c === '"' || c === "'") {
      quote = c
      word ??= ''
    } else if (WHITESPACE.has(c)) {
      endWord()
    } else if (c === '>' || c === '<') {
      // `2>` names a descriptor, not an argument; `>>` is one redirection.
      if (word !== null && /^\d$/.test(word)) word = null
      endWord()
      dropNextWord = true
    } else {
      word = (word ?? '') + c
    }
  }
  endCommand(text.length)
  return found
}

/** The job of one command's words, or null when it is not a tftp download. */
function jobOfCommand(words: readonly string[]): TftpJob | null {
  const at = words.findIndex(isTftpProgram)
  return at === -1 ? null : jobOfArguments(words.slice(at + 1))
}

function isTftpProgram(word: string): boolean {
  const name = word.slice(Math.max(word.lastIndexOf('/'), word.lastIndexOf('\\')) + 1).toLowerCase()
  return name === 'tftp' || name === 'tftp.exe'
}

function jobOfArguments(args: readonly string[]): TftpJob | null {
  const positional: string[] = []
  let remote: string | undefined
  let local: string | undefined
  let put = false
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string
    // tftp-hpa: everything after -c is one interactive command ("get FILE [LOCAL]").
    if (arg === '-c') return args[i + 1]?.toLowerCase() === 'get' ? jobOf(positional[0], positional[1], args[i + 2]) : null
    if (/^-[A-Za-z0-9]+$/.test(arg)) {
      // A cluster of short options (busybox accepts `-gr FILE`); a value is the cluster's rest or the next word.
      for (let k = 1; k < arg.length; k++) {
        const letter = arg[k] as string
        if (letter === 'p') put = true
        if (!OPTIONS_WITH_VALUE.has(letter)) continue
        const value = k + 1 < arg.length ? arg.slice(k + 1) : args[++i]
        if (letter === 'r') remote = value
        if (letter === 'l') local = value
        break
      }
      continue
    }
    const verb = arg.toLowerCase()
    // Windows: tftp [-i] HOST GET|PUT SOURCE [DESTINATION]
    if (verb === 'get') return jobOf(positional[positional.length - 1], undefined, args[i + 1])
    if (verb === 'put') return null
    positional.push(arg)
  }
  if (put) return null
  // busybox: tftp -g -r REMOTE [-l LOCAL] HOST [PORT]; with -l alone the remote name is the local one.
  return jobOf(positional[0], positional[1], remote ?? local)
}

function jobOf(hostText: string | undefined, portText: string | undefined, file: string | undefined): TftpJob | null {
  if (hostText === undefined || file === undefined || !isFileName(file)) return null
  const host = normaliseHost(hostText)
  if (host === null) return null
  let port = TFTP_DEFAULT_PORT
  // A second word that is not a number is noise after the host (busybox would refuse it; the file is still of interest).
  if (portText !== undefined && /^\d{1,5}$/.test(portText)) {
    port = Number(portText)
    if (port < 1 || port > 65_535) return null
  }
  return { host, port, file }
}

function urlJobs(text: string, maxJobs: number): Found[] {
  const found: Found[] = []
  const keys = new Set<string>()
  for (const match of text.matchAll(URL_PATTERN)) {
    if (found.length >= maxJobs) break
    // RFC 3617: the path is the percent-encoded file name; a `%00` decodes to NUL and is refused with the rest.
    const file = (match[3] ?? '').replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)))
    const job = jobOf(match[1], match[2], file)
    if (job === null || keys.has(keyOf(job))) continue
    keys.add(keyOf(job))
    found.push({ at: match.index, job })
  }
  return found
}

function keyOf(job: TftpJob): string {
  return `${job.host}\0${job.port}\0${job.file}`
}

/** Names the RRQ can carry: 1-255 bytes, no NUL (it ends the name) and no other control byte. */
function isFileName(file: string): boolean {
  return file.length > 0 && file.length <= TFTP_SCRIPT_LIMITS.maxFileChars && !/[\x00-\x1f\x7f]/.test(file)
}

function normaliseHost(text: string): string | null {
  const bare = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text
  if (isIP(bare) !== 0) return bare.toLowerCase()
  const name = bare.endsWith('.') ? bare.slice(0, -1) : bare
  if (name.length === 0 || name.length > 253) return null
  const labels = name.split('.')
  // All-digit last labels are mistyped addresses (999.1.1.1), not names: no top-level domain is numeric.
  if (!labels.every((label) => LABEL.test(label)) || /^\d+$/.test(labels[labels.length - 1] ?? '')) return null
  return name.toLowerCase()
}
