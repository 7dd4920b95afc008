import { parseIpAddress } from '../../config/cidr.js'

/** Whether the script asked for a passive or an active data connection (Windows ftp.exe only knows active). */
export type FtpModeHint = 'passive' | 'active' | null

/** One FTP session a payload asks for: where, as whom, and which files to fetch. */
export interface FtpJob {
  readonly host: string // lowercase DNS name, IPv4 or IPv6 address (no brackets)
  readonly port: number // 21 unless the script or URL names another
  readonly user: string; readonly password: string
  /** Remote names as the script sends them (latin1, one char per byte): never a control byte, so never a CR or LF. */
  readonly files: readonly string[]
  /** Per file, the name the script saves it under, or null when that name escapes the working directory. */
  readonly localNames: readonly (string | null)[]
  readonly modeHint: FtpModeHint
}

/** The bounds of parseFtpScript: attacker bytes decide how much work it does only up to these. */
export const FTP_SCRIPT_LIMITS = {
  maxScanBytes: 1024 * 1024, // bytes of a subject looked at; a dropper script is far smaller
  maxCommandChars: 4096, // a longer shell command is skipped whole
  maxLineChars: 1024, // a longer FTP script line is skipped
  maxScriptFiles: 32, // distinct files echo writes to that are followed
  maxScriptLines: 256, // lines kept per script file; later ones are dropped
  maxRuns: 64, // ftp invocations interpreted
  maxJobs: 16, // jobs returned at most, whatever the options ask
  maxFilesPerJob: 32, // files per job at most, whatever the options ask
  maxFileChars: 512, // a longer remote name is refused
  maxUrlChars: 2048, // a longer ftp:// URL is ignored
} as const

/** What a job uses where the script names no port or login. */
export const FTP_DEFAULTS = { port: 21, user: 'anonymous', password: 'anonymous@' } as const

interface Run { readonly autologin: boolean; readonly anonymous: boolean; readonly host: string | undefined; readonly port: string | undefined; readonly hint: FtpModeHint }
interface Session { host: string; port: number; user: string | null; password: string | null; files: string[]; locals: (string | null)[]; cwd: string; hint: FtpModeHint }

// The ftp.exe / BSD ftp commands: a line starting with one of these is a command, not a user name or a password.
const VERBS = new Set(['open', 'user', 'pass', 'bin', 'binary', 'ascii', 'type', 'get', 'recv', 'mget', 'put', 'send', 'mput', 'quit', 'bye', 'close',
  'disconnect', 'cd', 'lcd', 'prompt', 'hash', 'passive', 'pasv', 'quote', 'literal', 'dir', 'ls', 'pwd', 'verbose', 'status', 'glob', 'debug'])
const ESCAPED_GT = '\uE03E' // `^>` in cmd is a literal '>', not a redirection; latin1 text never holds this char
const LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/
const URL_PATTERN = /ftp:\/\/([^\s"'<>`|&;()\x00-\x1f\x7f-\xff]{1,2049})/gi // maxUrlChars + 1: a longer URL is refused, not cut

/**
 * The FTP downloads a payload asks for: cmd `echo ... >> f` scripts run with `ftp [-n] [-A] -s:f [host]` (or piped,
 * or fed with `< f`), and `ftp://user:pass@host:port/path` URLs. Pure and bounded by FTP_SCRIPT_LIMITS; never throws.
 */
export function parseFtpScript(data: Buffer, options: { readonly maxJobs?: number; readonly maxFilesPerJob?: number } = {}): FtpJob[] {
  const maxJobs = clamp(options.maxJobs ?? FTP_SCRIPT_LIMITS.maxJobs, FTP_SCRIPT_LIMITS.maxJobs)
  const maxFiles = clamp(options.maxFilesPerJob ?? FTP_SCRIPT_LIMITS.maxFilesPerJob, FTP_SCRIPT_LIMITS.maxFilesPerJob)
  const text = data.subarray(0, FTP_SCRIPT_LIMITS.maxScanBytes).toString('latin1')
  if (maxJobs === 0 || maxFiles === 0 || !/ftp|open/i.test(text)) return []
  const jobs: FtpJob[] = []
  const seen = new Set<string>() // a script run twice is one job; the plugin also fetches each URL once per attack
  function add(job: FtpJob): void {
    const key = JSON.stringify([job.host, job.port, job.user, job.password, job.files])
    if (jobs.length >= maxJobs || seen.has(key)) return
    seen.add(key)
    jobs.push({ ...job, files: job.files.slice(0, maxFiles), localNames: job.localNames.slice(0, maxFiles) })
  }
  scriptJobs(text, add)
  urlJobs(text, add)
  return jobs
}

/** `name` as a local file name, or null when it is empty, absolute, on a drive or share, or climbs with "..". */
export function localFileName(name: string): string | null {
  if (name.length === 0 || /^[\\/]|^[A-Za-z]:|[\x00-\x1f\x7f]/.test(name)) return null
  return name.split(/[\\/]/).some((part) => part === '..') ? null : name
}

/** Walks the shell commands in order, following what echo writes where and what each ftp invocation reads. */
function scriptJobs(text: string, add: (job: FtpJob) => void): void {
  const files = new Map<string, { lines: string[]; used: boolean }>()
  let stdout: string[] = [] // what the previous command or (group) printed, for `... | ftp`
  let group: string[] | null = null
  let runs = 0
  function write(name: string, lines: readonly string[], append: boolean): void {
    const file = files.get(name) ?? (files.size < FTP_SCRIPT_LIMITS.maxScriptFiles ? { lines: [], used: false } : null)
    if (file === null) return
    files.set(name, file)
    if (!append) file.lines = []
    file.used = false // written anew: a later run reads it again, and an orphan check looks at it
    file.lines.push(...lines.slice(0, Math.max(0, FTP_SCRIPT_LIMITS.maxScriptLines - file.lines.length)))
  }
  forEachCommand(text, (raw, before) => {
    if (before === '(') group = []
    const command = anchorCommand(raw).replace(/^(?:\s|@|"|cmd(?:\.exe)?\s+\/[ck]|start\s|\/b\s)+/i, '')
    const printed: string[] = []
    const echo = /^echo(?:[\s.:(]|$)/i.test(command) ? parseEcho(command.slice(5)) : null
    if (echo !== null && echo.file === null) printed.push(echo.line)
    else if (echo !== null && echo.file !== null) write(echo.file, [echo.line], echo.append)
    else if (before === ')' && command.startsWith('>')) {
      const target = redirectTarget(command) // `(echo a& echo b) > f`: the group's lines go to f
      if (target !== null) write(target.file, stdout, target.append)
    } else if (runs < FTP_SCRIPT_LIMITS.maxRuns) {
      const invocation = parseInvocation(command)
      if (invocation !== null) {
        runs++
        const file = invocation.script === null ? undefined : files.get(invocation.script)
        if (file !== undefined) file.used = true
        interpret(invocation.script === null ? (before === '|' ? stdout : []) : (file?.lines ?? []), invocation.run, add)
      }
    }
    if (group !== null && group.length < FTP_SCRIPT_LIMITS.maxScriptLines) group.push(...printed)
    if (before !== ')' || echo !== null) stdout = group ?? printed
  }, (closing) => {
    if (closing && group !== null) { stdout = group; group = null }
  })
  // A script written but never run (the payload was cut short) still says where the sample is, when it opens a host.
  const orphan: Run = { autologin: true, anonymous: false, hint: null, host: undefined, port: undefined }
  for (const file of files.values()) if (!file.used && file.lines.some((line) => /^\s*open\s/i.test(line))) interpret(file.lines, orphan, add)
}

/**
 * Calls `each(command, separatorBefore)` for the commands between & && | || ; line ends and parens, and `group` at each
 * paren. As in cmd, "(" opens a group only where a command starts and ")" closes one only inside a group (so
 * "get a(1).exe" stays whole), and `^X` is a literal X. A command longer than the limit is skipped.
 */
function forEachCommand(text: string, each: (command: string, before: string) => void, group: (closing: boolean) => void): void {
  let [start, depth, before] = [0, 0, '']
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text[i] : '\n'
    if (c === '^' && i + 1 < text.length) { i++; continue }
    if (c === '(' && (i - start > 64 || !/^[\s@]*(?:cmd(?:\.exe)?\s+\/[ckCK])?[\s"]*$/i.test(text.slice(start, i)))) continue
    if (c === ')' && depth === 0) continue
    if (c !== '&' && c !== '|' && c !== ';' && c !== '(' && c !== ')' && c !== '\n' && c !== '\r') continue
    if (i - start <= FTP_SCRIPT_LIMITS.maxCommandChars) {
      const command = text.slice(start, i).replace(/\^([\s\S])/g, (_, x: string) => (x === '>' ? ESCAPED_GT : x)).trim()
      if (command.length > 0) each(command, before)
    }
    if (c === '(' || c === ')') { depth += c === '(' ? 1 : -1; group(c === ')') }
    // `a && b` and `a || b`: one separator, two characters.
    if ((c === '&' || c === '|') && text[i + 1] === c) i++
    before = c
    start = i + 1
  }
}

/**
 * Where the command of a segment starts. Scripts come inside other traffic (an HTTP header, an exploit's filler, a
 * `GET /?x=` parameter), so a segment may begin with bytes that are not a command: it starts at the last `cmd /c`,
 * or else at an `echo` or `ftp` word that follows a space, quote, `=` or `:`. A segment that already starts with a
 * command is left as it is.
 */
function anchorCommand(raw: string): string {
  if (/^[\s@"]*(?:echo|ftp(?:\.exe)?)(?:[\s.:(]|$)/i.test(raw)) return raw
  let at = -1
  for (const m of raw.matchAll(/(?:^|[^A-Za-z0-9_])(cmd(?:\.exe)?\s+\/[ck]\s)/gi)) at = m.index + m[0].length - m[1]!.length
  if (at >= 0) return raw.slice(at)
  const word = /(?:^|[\s"'=:])((?:echo|ftp(?:\.exe)?)(?:[\s.:(]|$))/i.exec(raw)
  return word === null ? raw : raw.slice(word.index + word[0].length - word[1]!.length)
}

/** `echo TEXT [>|>> FILE]` after the word echo: the printed line and where it goes (null: stdout). */
function parseEcho(rest: string): { line: string; file: string | null; append: boolean } | null {
  const restore = (text: string): string => text.replaceAll(ESCAPED_GT, '>').trim()
  const at = rest.indexOf('>')
  if (at === -1) return { line: restore(rest), file: null, append: false }
  let line = rest.slice(0, at)
  const handle = /(^|\s)([0-9])$/.exec(line)
  if (handle !== null) line = line.slice(0, line.length - 1) // `1>>f`: the digit names a handle, it is not printed
  if (handle?.[2] !== undefined && handle[2] !== '1') return { line: restore(line), file: null, append: false }
  const target = redirectTarget(rest.slice(at))
  return target === null ? null : { line: restore(line), file: target.file, append: target.append }
}

function redirectTarget(text: string): { file: string; append: boolean } | null {
  const match = /^\s*(>>?)\s*"?([^\s"<>]{1,260})/.exec(text)
  return match === null ? null : { file: (match[2] ?? '').toLowerCase(), append: match[1] === '>>' }
}

/** `ftp [options] [host [port]] [< file]` as a command: what it reads and how it logs in; null for other commands. */
function parseInvocation(command: string): { script: string | null; run: Run } | null {
  const words = command.replace(/>>?|</g, ' $& ').split(/\s+/).filter((w) => w.length > 0)
  const at = words.findIndex((w) => /^(?:.*[\\/])?ftp(?:\.exe)?$/i.test(w.replaceAll('"', '')))
  if (at === -1) return null
  let script: string | null = null
  let windows = false // -s: is ftp.exe's, and ftp.exe only knows active mode
  const letters = new Set<string>()
  const positional: string[] = []
  for (let i = at + 1; i < words.length; i++) {
    const word = (words[i] as string).replaceAll('"', '')
    const next = words[i + 1]
    // `2>nul`: the digit names a handle; the target of any redirection is not an argument either.
    if (/^\d$/.test(word) && (next === '>' || next === '>>')) continue
    if (word === '>' || word === '>>') { i++; continue }
    if (word === '<') { script = next?.replaceAll('"', '').toLowerCase() ?? null; i++; continue }
    const option = /^[-/]([A-Za-z])(?::(.*))?$/.exec(word)
    if (option === null) positional.push(word)
    else if (/^s$/i.test(option[1] ?? '') && option[2] !== undefined) { script = option[2].toLowerCase(); windows = true }
    else letters.add(option[1] ?? '') // -n: no auto-login, -A: anonymous, -p: passive (BSD ftp)
  }
  const anonymous = letters.has('A')
  const hint = letters.has('p') ? 'passive' : windows ? 'active' : null
  return { script, run: { autologin: !letters.has('n') && !anonymous, anonymous, hint, host: positional[0], port: positional[1] } }
}

/** Plays the script lines the way ftp reads them (login prompts included) and hands each finished session to `add`. */
function interpret(lines: readonly string[], run: Run, add: (job: FtpJob) => void): void {
  // One object, not two `let`s: the closures below change it, which flow analysis would not see.
  const state: { session: Session | null; expect: 'user' | 'password' | null } = { session: null, expect: null }
  function finish(): void {
    const session = state.session
    if (session !== null && session.files.length > 0) {
      const user = session.user ?? FTP_DEFAULTS.user
      const password = session.password ?? (user === FTP_DEFAULTS.user || user === 'ftp' ? FTP_DEFAULTS.password : '')
      add({ host: session.host, port: session.port, user, password, files: session.files, localNames: session.locals, modeHint: session.hint })
    }
    ;[state.session, state.expect] = [null, null]
  }
  function open(hostText: string | undefined, portText: string | undefined): void {
    finish()
    const host = normaliseHost(hostText ?? '')
    const port = portText === undefined ? FTP_DEFAULTS.port : /^\d{1,5}$/.test(portText) ? Number(portText) : 0
    if (host === null || port < 1 || port > 65_535) return
    state.session = { host, port, user: run.anonymous ? FTP_DEFAULTS.user : null, password: null, files: [], locals: [], cwd: '', hint: run.hint }
    state.expect = run.autologin ? 'user' : null
  }
  if (run.host !== undefined) open(run.host, run.port)
  for (const raw of lines) {
    const line = raw.trim()
    if (line.length === 0 || line.length > FTP_SCRIPT_LIMITS.maxLineChars || /[\x00-\x08\x0a-\x1f\x7f]/.test(line)) continue
    const words = splitWords(line)
    let verb = (words[0] ?? '').toLowerCase()
    const s = state.session
    // ftp without -n prompts for a user name and a password after open: the next two lines answer, unless they are commands.
    if (s !== null && state.expect !== null && verb !== 'user' && verb !== 'pass' && !VERBS.has(verb)) {
      if (state.expect === 'user') { s.user = line; state.expect = 'password' } else { s.password = line; state.expect = null }
      continue
    }
    if (verb === 'quote' || verb === 'literal') { words.shift(); verb = (words[0] ?? '').toLowerCase() }
    if (verb === 'open') { open(words[1], words[2]); continue }
    if (verb === 'bye' || verb === 'quit') break
    if (verb === 'close' || verb === 'disconnect') { finish(); continue }
    if (s === null) continue
    const prompted = state.expect
    state.expect = verb === 'user' && words[1] !== undefined && words[2] === undefined ? 'password' : null
    if (verb === 'user' && words[1] !== undefined) [s.user, s.password] = [words[1], words[2] ?? s.password]
    if (verb === 'pass') s.password = words.length > 1 ? words.slice(1).join(' ') : prompted === 'password' ? line : ''
    if (verb === 'passive' || verb === 'pasv' || verb === 'epsv') s.hint = 'passive'
    if (verb === 'cd' && words[1] !== undefined) s.cwd = joinPath(s.cwd, words[1])
    if (verb === 'get' || verb === 'recv') addFile(s, words[1], words[2])
    if (verb === 'mget') for (const name of words.slice(1)) addFile(s, name, undefined)
  }
  finish()
}

function addFile(session: Session, name: string | undefined, local: string | undefined): void {
  if (name === undefined || /[*?]/.test(name) || session.files.length >= FTP_SCRIPT_LIMITS.maxFilesPerJob) return // wildcards need NLST
  const remote = joinPath(session.cwd, name)
  if (!isFileName(remote) || session.files.includes(remote)) return
  session.files.push(remote)
  session.locals.push(localFileName(local ?? name)) // ftp saves under the remote name when no local one is given
}

/** `name` seen from directory `dir` after `cd dir`, as RETR takes it (relative to the login directory, or absolute). */
function joinPath(dir: string, name: string): string {
  return dir === '' || name.startsWith('/') ? name : `${dir.replace(/\/+$/, '')}/${name}`
}

/** Words of an FTP script line; "double quotes" group a name with spaces, as ftp.exe reads them. */
function splitWords(line: string): string[] {
  return [...line.matchAll(/"([^"]*)"?|(\S+)/g)].map((m) => m[1] ?? m[2] ?? '').filter((w) => w.length > 0)
}

function urlJobs(text: string, add: (job: FtpJob) => void): void {
  let seen = 0
  for (const match of text.matchAll(URL_PATTERN)) {
    if (++seen > FTP_SCRIPT_LIMITS.maxJobs * FTP_SCRIPT_LIMITS.maxFilesPerJob) break
    const rest = match[1] ?? ''
    const slash = rest.indexOf('/')
    if (slash === -1 || rest.length > FTP_SCRIPT_LIMITS.maxUrlChars) continue
    const authority = rest.slice(0, slash)
    const at = authority.lastIndexOf('@')
    const userinfo = at === -1 ? null : authority.slice(0, at)
    const hostPort = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(authority.slice(at + 1))
    const host = normaliseHost(hostPort?.[1] ?? '')
    const port = Number(hostPort?.[2] ?? FTP_DEFAULTS.port)
    // RFC 1738: the path is percent-encoded bytes; a decoded CR, LF or NUL is refused with the name.
    const file = percentDecode(rest.slice(slash + 1))
    if (host === null || port < 1 || port > 65_535 || !isFileName(file) || file.endsWith('/')) continue
    const colon = userinfo?.indexOf(':') ?? -1
    const user = userinfo === null ? FTP_DEFAULTS.user : percentDecode(colon === -1 ? userinfo : userinfo.slice(0, colon))
    const password = userinfo === null || colon === -1 ? (user === FTP_DEFAULTS.user ? FTP_DEFAULTS.password : '') : percentDecode(userinfo.slice(colon + 1))
    if (/[\x00-\x1f\x7f]/.test(user + password) || user.length === 0) continue
    add({ host, port, user, password, files: [file], localNames: [localFileName(file.slice(file.lastIndexOf('/') + 1))], modeHint: null })
  }
}

function percentDecode(text: string): string {
  return text.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)))
}

/** Names an FTP command can carry: 1-512 chars, no control byte (CR or LF would end the command early). */
function isFileName(name: string): boolean {
  return name.length > 0 && name.length <= FTP_SCRIPT_LIMITS.maxFileChars && !/[\x00-\x1f\x7f]/.test(name)
}

function normaliseHost(text: string): string | null {
  const bare = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text
  if (bare.length > 253) return null
  if (parseIpAddress(bare) !== null) return bare.toLowerCase()
  const name = bare.endsWith('.') ? bare.slice(0, -1) : bare
  const labels = name.split('.')
  // At least two labels, and a last one that is not all digits: "999.1.1.1" is a mistyped address, "o" a script name.
  if (labels.length < 2 || !labels.every((label) => LABEL.test(label)) || /^\d+$/.test(labels[labels.length - 1] ?? '')) return null
  return name.toLowerCase()
}

function clamp(value: number, max: number): number {
  return Number.isFinite(value) ? Math.max(0, Math.min(Math.floor(value), max)) : 0
}
