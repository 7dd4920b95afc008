/**
 * Rebuilds what a VNC client typed and pasted from the bytes it sent (RFC 6143): the ProtocolVersion line, the
 * security handshake, then client-to-server messages. Pure and bounded: one pass over the input (each step moves at
 * least one byte forward, each check looks at a fixed number of bytes), output never longer than the input.
 */

/** What a VNC client sent that a person (or a bot) meant as text. */
export interface RfbSession {
  readonly version: string | null // "003.008" when the stream starts with a ProtocolVersion line
  readonly typed: string // key-down events turned back into text, lines separated by "\n"
  readonly clipboard: readonly string[] // ClientCutText texts (Latin-1), in order; a truncated last one is kept
  readonly keyEvents: number // KeyEvent messages parsed, down and up
  readonly skippedBytes: number // bytes that did not parse as a message (garbage, unknown extensions, truncation)
}

// Client-to-server message types (RFC 6143 section 7.5), plus QEMU's extended key event (type 255, subtype 0).
const SET_PIXEL_FORMAT = 0
const SET_ENCODINGS = 2
const UPDATE_REQUEST = 3
const KEY_EVENT = 4
const POINTER_EVENT = 5
const CLIENT_CUT_TEXT = 6
const QEMU_MESSAGE = 255

// messageLength() answers a length (> 0) or one of these.
const SHORT = 0 // a plausible start whose message runs past the end of the input
const BAD = -1 // not a message start

// Real clients announce a few dozen encodings; thousands means we are reading garbage.
const MAX_ENCODINGS = 1024
// Larger cut texts are not plausible from a session whose attack string the sensor caps far below this.
const MAX_CUT_TEXT_BYTES = 64 * 1024 * 1024
// Consecutive messages that must parse before a candidate handshake end is believed.
const HANDSHAKE_CHAIN = 2

const VERSION_LINE = /^RFB (\d{3})\.(\d{3})\n$/

// Keysyms (X11 keysymdef.h) that matter here.
const XK_BACKSPACE = 0xff08
const XK_TAB = 0xff09
const XK_RETURN = 0xff0d
const XK_KP_ENTER = 0xff8d
const XK_KP_TAB = 0xff89
const XK_KP_SPACE = 0xff80
const XK_KP_EQUAL = 0xffbd
const XK_SHIFT_L = 0xffe1 // modifiers are 0xffe1 (Shift_L) .. 0xffee (Hyper_R)
const XK_HYPER_R = 0xffee
const CONTROL = new Set([0xffe3, 0xffe4])
const ALT = new Set([0xffe7, 0xffe8, 0xffe9, 0xffea]) // Meta and Alt, left and right
const SUPER = new Set([0xffeb, 0xffec, 0xffed, 0xffee]) // Super and Hyper: the Windows key
const UNICODE_KEYSYM_BASE = 0x01000000

/** Length of the message starting at `at`, SHORT or BAD; looks at a fixed number of bytes. */
function messageLength(data: Buffer, at: number): number {
  const left = data.length - at
  switch (data[at]) {
    case SET_PIXEL_FORMAT: {
      if (left < 20) return SHORT
      const bitsPerPixel = data[at + 4]!
      const plausible = (bitsPerPixel === 8 || bitsPerPixel === 16 || bitsPerPixel === 32) && data[at + 5]! <= 32
      return plausible && data[at + 6]! <= 1 && data[at + 7]! <= 1 ? 20 : BAD
    }
    case SET_ENCODINGS: {
      if (left < 4) return SHORT
      const count = data.readUInt16BE(at + 2)
      if (count === 0 || count > MAX_ENCODINGS) return BAD
      return left < 4 + 4 * count ? SHORT : 4 + 4 * count
    }
    case UPDATE_REQUEST:
      if (left < 10) return SHORT
      return data[at + 1]! <= 1 ? 10 : BAD
    case KEY_EVENT:
      if (left < 8) return SHORT
      return data[at + 1]! <= 1 && isKeysym(data.readUInt32BE(at + 4)) ? 8 : BAD
    case POINTER_EVENT:
      return left < 6 ? SHORT : 6
    case CLIENT_CUT_TEXT: {
      if (left < 8) return SHORT
      // A negative length is the Extended Clipboard pseudo-encoding: |length| bytes of flags and zlib data.
      const size = Math.abs(data.readInt32BE(at + 4))
      if (size > MAX_CUT_TEXT_BYTES) return BAD
      return left < 8 + size ? SHORT : 8 + size
    }
    case QEMU_MESSAGE:
      if (left < 2) return SHORT
      if (data[at + 1] !== 0) return BAD // only the extended key event is understood
      if (left < 12) return SHORT
      return data.readUInt16BE(at + 2) <= 1 && isKeysym(data.readUInt32BE(at + 4)) ? 12 : BAD
    default:
      return BAD
  }
}

/** Keysyms that exist: legacy (16 bits), Unicode (0x01000000 + code point), XF86 vendor keys, VoidSymbol. */
function isKeysym(keysym: number): boolean {
  if (keysym <= 0xffff || keysym === 0xffffff) return true
  if (keysym >= UNICODE_KEYSYM_BASE && keysym <= UNICODE_KEYSYM_BASE + 0x10ffff) return true
  return keysym >>> 16 === 0x1008
}

/** How many messages (up to `wanted`) parse back to back from `at`; reaching the end counts as all of them. */
function chainLength(data: Buffer, at: number, wanted: number): number {
  let count = 0
  while (count < wanted) {
    if (at === data.length) return wanted
    const length = messageLength(data, at)
    if (length === SHORT) return wanted // a session cut by the capture limit
    if (length === BAD) return count
    at += length
    count += 1
  }
  return count
}

/**
 * Where client messages start, or -1 when unknown. The client's handshake bytes depend on what the server offered,
 * which is not in the attack string, so each possible end is tried: RFB 3.3 sends a 16-byte VNC auth response or
 * nothing, then ClientInit (1 byte); 3.7 and 3.8 first send the chosen security type (1 byte).
 */
function handshakeEnd(data: Buffer, minor: number): number {
  const afterVersion = 12
  const vncAuth = minor >= 7 ? [afterVersion + 18, afterVersion + 2] : [afterVersion + 17, afterVersion + 1]
  // 3.7+ names its choice: try the VNC-auth layout first when the client chose type 2, the others first otherwise.
  const candidates = minor >= 7 && data[afterVersion] === 2 ? vncAuth : vncAuth.reverse()
  for (const at of candidates) {
    if (at <= data.length && chainLength(data, at, HANDSHAKE_CHAIN) === HANDSHAKE_CHAIN) return at
  }
  return -1
}

/** The character a key-down of `keysym` types, or null for keys that do not type one. */
function printable(keysym: number): string | null {
  if ((keysym >= 0x20 && keysym <= 0x7e) || (keysym >= 0xa0 && keysym <= 0xff)) return String.fromCharCode(keysym)
  if (keysym >= 0xffaa && keysym <= 0xffb9) return '*+,-./0123456789'.charAt(keysym - 0xffaa) // keypad
  if (keysym === XK_KP_SPACE) return ' '
  if (keysym === XK_KP_EQUAL) return '='
  if (keysym < UNICODE_KEYSYM_BASE) return null
  const codePoint = keysym - UNICODE_KEYSYM_BASE
  if (codePoint < 0x20 || (codePoint >= 0x7f && codePoint <= 0x9f) || (codePoint >= 0xd800 && codePoint <= 0xdfff)) {
    return null
  }
  return codePoint <= 0x10ffff ? String.fromCodePoint(codePoint) : null
}

/** Turns key events into text the way a shell prompt would see it. */
class Typist {
  readonly #chars: string[] = []
  readonly #held = new Set<number>() // modifier keysyms currently down

  key(keysym: number, down: boolean): void {
    if (keysym >= XK_SHIFT_L && keysym <= XK_HYPER_R) {
      if (down) this.#held.add(keysym)
      else this.#held.delete(keysym)
      return
    }
    if (!down) return
    const superDown = this.#holds(SUPER)
    // Win+R opens the Run dialog: what follows is a new command.
    if (superDown && (keysym === 0x72 || keysym === 0x52)) {
      this.#newLine()
      return
    }
    if (keysym === XK_RETURN || keysym === XK_KP_ENTER) {
      this.#chars.push('\n')
      return
    }
    if (keysym === XK_BACKSPACE) {
      // A line already entered stays entered: Backspace never reaches back across a Return.
      if (this.#chars.length > 0 && this.#chars[this.#chars.length - 1] !== '\n') this.#chars.pop()
      return
    }
    // With Ctrl or Alt alone a letter is a shortcut, not text; Ctrl+Alt together is how Windows clients send AltGr.
    if (superDown || this.#holds(CONTROL) !== this.#holds(ALT)) return
    const char = keysym === XK_TAB || keysym === XK_KP_TAB ? '\t' : printable(keysym)
    if (char !== null) this.#chars.push(char)
  }

  text(): string {
    return this.#chars.join('')
  }

  #holds(keys: ReadonlySet<number>): boolean {
    for (const k of this.#held) if (keys.has(k)) return true
    return false
  }

  #newLine(): void {
    if (this.#chars.length > 0 && this.#chars[this.#chars.length - 1] !== '\n') this.#chars.push('\n')
  }
}

/**
 * Parses the client side of an RFB session. Never throws: bytes that do not parse are skipped one at a time until two
 * messages in a row parse again (one message is enough while in step), so garbage costs what it skips and no more.
 */
export function parseRfbSession(data: Buffer): RfbSession {
  const typist = new Typist()
  const clipboard: string[] = []
  let keyEvents = 0
  let skippedBytes = 0
  let version: string | null = null
  let at = 0
  let inStep = false
  const match = data.length >= 12 ? VERSION_LINE.exec(data.toString('latin1', 0, 12)) : null
  if (match !== null) {
    version = `${match[1]}.${match[2]}`
    const end = handshakeEnd(data, Number(match[2]))
    inStep = end >= 0
    at = inStep ? end : 12
    skippedBytes = inStep ? 0 : Math.min(12, data.length)
  }
  while (at < data.length) {
    const length = messageLength(data, at)
    if (length > 0 && (inStep || chainLength(data, at + length, 1) === 1)) {
      const type = data[at]
      if (type === KEY_EVENT) {
        keyEvents += 1
        typist.key(data.readUInt32BE(at + 4), data[at + 1] === 1)
      } else if (type === QEMU_MESSAGE) {
        keyEvents += 1
        typist.key(data.readUInt32BE(at + 4), data.readUInt16BE(at + 2) === 1)
      } else if (type === CLIENT_CUT_TEXT && data.readInt32BE(at + 4) > 0) {
        clipboard.push(data.toString('latin1', at + 8, at + length))
      }
      at += length
      inStep = true
      continue
    }
    // A cut text cut off by the capture limit still carries what was pasted.
    if (length === SHORT && inStep && data[at] === CLIENT_CUT_TEXT && data.length - at > 8 && data.readInt32BE(at + 4) > 0) {
      clipboard.push(data.toString('latin1', at + 8))
    }
    skippedBytes += 1
    at += 1
    inStep = false
  }
  return { version, typed: typist.text(), clipboard, keyEvents, skippedBytes }
}
