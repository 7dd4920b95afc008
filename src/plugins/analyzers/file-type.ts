/**
 * What kind of file a subject is, from its magic bytes and headers: executables (with their machine), archives,
 * compressed data, a few documents and images, and scripts (shebang or shell command lines). Every header read is
 * bounds-checked: a truncated or lying header yields fewer details, never a throw or a read past the buffer.
 */

export type FileTypeName =
  | 'elf' | 'pe32' | 'pe32+' | 'msdos' | 'macho' | 'macho-fat' | 'java-class' | 'script'
  | 'zip' | 'gzip' | 'bzip2' | 'xz' | 'zstd' | '7z' | 'rar' | 'tar' | 'cab' | 'ar' | 'deb' | 'rpm'
  | 'cfb' | 'pdf' | 'png' | 'jpeg' | 'gif'

export type FileTypeDetails = { readonly [key: string]: string | number | boolean | null }

/** A detected type: a stable name, a one-line description in the manner of file(1), and what the header says. */
export interface FileType {
  readonly type: FileTypeName
  readonly description: string
  readonly details: FileTypeDetails
}

/** How much of a subject the text heuristics read (headers never need more than their own bounds). */
export interface DetectOptions {
  readonly scriptScanBytes?: number // bytes from the start examined for shell command lines; default 4096
}

const MAX_PROGRAM_HEADERS = 256 // real binaries have < 20; bounds the loop on a lying e_phnum
const MAX_DYNAMIC_ENTRIES = 512
const MAX_NAME_BYTES = 255 // names taken from headers (zip entry, gzip name, tar entry, interpreter)

function u16(data: Buffer, at: number, le: boolean): number | null {
  if (at < 0 || at + 2 > data.length) return null
  return le ? data.readUInt16LE(at) : data.readUInt16BE(at)
}

function u32(data: Buffer, at: number, le: boolean): number | null {
  if (at < 0 || at + 4 > data.length) return null
  return le ? data.readUInt32LE(at) : data.readUInt32BE(at)
}

/** A 64-bit offset as a number, or null when it is out of the buffer anyway (high half set) or unreadable. */
function u64(data: Buffer, at: number, le: boolean): number | null {
  const low = u32(data, le ? at : at + 4, le)
  const high = u32(data, le ? at + 4 : at, le)
  return low === null || high !== 0 ? null : low
}

function startsWith(data: Buffer, magic: string, at = 0): boolean {
  return data.length >= at + magic.length && data.toString('latin1', at, at + magic.length) === magic
}

/** Attacker-chosen bytes as a short printable string: control bytes and non-ASCII become '?'. */
function printable(data: Buffer, from: number, to: number): string {
  return data.toString('latin1', Math.max(0, from), Math.min(data.length, to, from + MAX_NAME_BYTES)).replace(/[^\x20-\x7e]/g, '?')
}

/** A NUL-terminated string at `at`, bounded by `max` bytes. */
function cString(data: Buffer, at: number, max: number): string | null {
  if (at >= data.length) return null
  const end = data.indexOf(0, at)
  return printable(data, at, end === -1 || end - at > max ? at + max : end)
}

const ELF_MACHINES: Readonly<Record<number, string>> = {
  2: 'SPARC', 3: 'x86', 4: 'm68k', 8: 'MIPS', 20: 'PowerPC', 21: 'PowerPC64', 22: 'S/390', 40: 'ARM', 42: 'SuperH',
  43: 'SPARC V9', 50: 'IA-64', 62: 'x86-64', 183: 'AArch64', 243: 'RISC-V', 258: 'LoongArch',
}
const ELF_TYPES: Readonly<Record<number, string>> = { 1: 'relocatable', 2: 'executable', 3: 'shared object', 4: 'core file' }

function detectElf(data: Buffer): FileType {
  const bits = data[4] === 1 ? 32 : data[4] === 2 ? 64 : null
  const le = data[5] !== 2
  const endianness = data[5] === 1 ? 'little' : data[5] === 2 ? 'big' : null
  const type = u16(data, 16, le)
  const machineId = u16(data, 18, le)
  const machine = machineId === null ? null : (ELF_MACHINES[machineId] ?? `machine ${machineId}`)
  let kind = type === null ? null : (ELF_TYPES[type] ?? `type ${type}`)
  let linking: string | null = null
  if (bits !== null && endianness !== null) {
    const wide = bits === 64
    const phoff = wide ? u64(data, 32, le) : u32(data, 28, le)
    const phentsize = u16(data, wide ? 54 : 42, le) ?? 0
    const phnum = Math.min(u16(data, wide ? 56 : 44, le) ?? 0, MAX_PROGRAM_HEADERS)
    let interp = false
    let dynamic: { offset: number; size: number } | null = null
    let complete = phoff !== null && phentsize >= (wide ? 56 : 32)
    for (let i = 0; complete && i < phnum; i++) {
      const at = (phoff as number) + i * phentsize
      const pType = u32(data, at, le)
      const offset = wide ? u64(data, at + 8, le) : u32(data, at + 4, le)
      const size = wide ? u64(data, at + 32, le) : u32(data, at + 16, le)
      if (pType === null || offset === null || size === null) complete = false
      else if (pType === 3) interp = true
      else if (pType === 2) dynamic = { offset, size }
    }
    // As file(1): an ET_DYN with DF_1_PIE in its dynamic section is a "pie executable", not a shared object, and
    // "dynamically linked" means a dynamic section (a PIE without an interpreter loads itself: "static-pie").
    const pie = type === 3 && dynamic !== null && hasPieFlag(data, dynamic, wide, le)
    if (pie) kind = 'pie executable'
    if (complete && phnum > 0) linking = dynamic === null ? 'static' : pie && !interp ? 'static-pie' : 'dynamic'
  }
  const upx = data.subarray(0, 4096).includes('UPX!')
  const parts = [`ELF ${bits === null ? 'invalid class' : `${bits}-bit`}${endianness === null ? '' : endianness === 'little' ? ' LSB' : ' MSB'}${kind === null ? '' : ` ${kind}`}`]
  if (machine !== null) parts.push(machine)
  if (linking !== null) parts.push(`${linking === 'dynamic' ? 'dynamically' : linking === 'static' ? 'statically' : linking} linked`)
  if (upx) parts.push('UPX compressed')
  return { type: 'elf', description: parts.join(', '), details: { class: bits, endianness, machine, elfType: kind, linking, upx } }
}

function hasPieFlag(data: Buffer, dynamic: { offset: number; size: number }, wide: boolean, le: boolean): boolean {
  const entry = wide ? 16 : 8
  const count = Math.min(Math.floor(dynamic.size / entry), MAX_DYNAMIC_ENTRIES)
  for (let i = 0; i < count; i++) {
    const at = dynamic.offset + i * entry
    const tag = wide ? u64(data, at, le) : u32(data, at, le)
    const value = u32(data, wide ? (le ? at + 8 : at + 12) : at + 4, le)
    if (tag === null || value === null || tag === 0) return false // DT_NULL ends the section
    if (tag === 0x6ffffffb) return (value & 0x08000000) !== 0 // DT_FLAGS_1 & DF_1_PIE
  }
  return false
}

const PE_MACHINES: Readonly<Record<number, string>> = {
  0x14c: 'x86', 0x8664: 'x86-64', 0x1c0: 'ARM', 0x1c4: 'ARM Thumb-2', 0xaa64: 'AArch64', 0x200: 'IA-64', 0x166: 'MIPS',
}
const PE_SUBSYSTEMS: Readonly<Record<number, string>> = {
  1: 'native', 2: 'GUI', 3: 'console', 7: 'POSIX', 9: 'Windows CE GUI', 10: 'EFI application',
  11: 'EFI boot service driver', 12: 'EFI runtime driver', 13: 'EFI ROM', 14: 'Xbox', 16: 'boot application',
}

function detectMz(data: Buffer): FileType {
  const lfanew = u32(data, 0x3c, true)
  if (lfanew === null || !startsWith(data, 'PE\0\0', lfanew)) return { type: 'msdos', description: 'MS-DOS executable', details: {} }
  const coff = lfanew + 4
  const machineId = u16(data, coff, true)
  const characteristics = u16(data, coff + 18, true)
  const type = u16(data, coff + 20, true) === 0x20b ? 'pe32+' : 'pe32'
  // At 68 in both the PE32 and the PE32+ optional header, when the header is long enough to hold it.
  const subsystemId = (u16(data, coff + 16, true) ?? 0) >= 70 ? u16(data, coff + 20 + 68, true) : null
  const machine = machineId === null ? null : (PE_MACHINES[machineId] ?? `machine 0x${machineId.toString(16)}`)
  const subsystem = subsystemId === null ? null : (PE_SUBSYSTEMS[subsystemId] ?? `subsystem ${subsystemId}`)
  const dll = characteristics === null ? null : (characteristics & 0x2000) !== 0
  const upx = data.subarray(0, 4096).includes('UPX!')
  const description = `${type === 'pe32+' ? 'PE32+' : 'PE32'} executable${dll === true ? ' (DLL)' : ''}${subsystem === null ? '' : ` (${subsystem})`}${machine === null ? '' : ` ${machine}`}, for MS Windows${upx ? ', UPX compressed' : ''}`
  return { type, description, details: { machine, subsystem, dll, upx } }
}

const MACHO_CPUS: Readonly<Record<number, string>> = {
  7: 'x86', 0x01000007: 'x86-64', 12: 'ARM', 0x0100000c: 'AArch64', 0x0200000c: 'ARM64_32', 18: 'PowerPC', 0x01000012: 'PowerPC64',
}
const MACHO_FILETYPES: Readonly<Record<number, string>> = { 1: 'object', 2: 'executable', 4: 'core', 6: 'dynamic library', 7: 'dynamic linker', 8: 'bundle' }

function cpuName(id: number | null): string | null {
  return id === null ? null : (MACHO_CPUS[id] ?? `cpu ${id}`)
}

function detectMacho(data: Buffer, magic: number): FileType {
  const bits = magic === 0xfeedfacf || magic === 0xcffaedfe ? 64 : 32
  const le = magic === 0xcefaedfe || magic === 0xcffaedfe
  const cpu = cpuName(u32(data, 4, le))
  const fileTypeId = u32(data, 12, le)
  const fileType = fileTypeId === null ? null : (MACHO_FILETYPES[fileTypeId] ?? `filetype ${fileTypeId}`)
  const description = `Mach-O ${bits}-bit${cpu === null ? '' : ` ${cpu}`}${fileType === null ? '' : ` ${fileType}`}`
  return { type: 'macho', description, details: { class: bits, endianness: le ? 'little' : 'big', cpu, fileType } }
}

function detectCafebabe(data: Buffer, magic: number): FileType {
  const count = u32(data, 4, false) ?? 0
  // Java class files share 0xcafebabe: their next word is the version (major >= 45), a fat header's is an arch count.
  if (magic === 0xcafebabe && count >= 20) {
    const major = u16(data, 6, false)
    return { type: 'java-class', description: `compiled Java class data, version ${major}.${u16(data, 4, false)}`, details: { major } }
  }
  const entry = magic === 0xcafebabf ? 32 : 20
  const cpus: string[] = []
  for (let i = 0; i < Math.min(count, 64); i++) {
    const cpu = cpuName(u32(data, 8 + i * entry, false))
    if (cpu === null) break
    cpus.push(cpu)
  }
  return { type: 'macho-fat', description: `Mach-O universal binary with ${count} architectures`, details: { architectures: count, cpus: cpus.join(',') } }
}

const ZIP_METHODS: Readonly<Record<number, string>> = { 0: 'store', 8: 'deflate', 9: 'deflate64', 12: 'bzip2', 14: 'lzma', 93: 'zstd', 95: 'xz', 99: 'AES' }

function detectZip(data: Buffer): FileType {
  const version = u16(data, 4, true)
  const flags = u16(data, 6, true)
  const methodId = u16(data, 8, true)
  const nameLength = u16(data, 26, true)
  const method = methodId === null ? null : (ZIP_METHODS[methodId] ?? `method ${methodId}`)
  const details = {
    versionNeeded: version === null ? null : `${Math.floor(version / 10)}.${version % 10}`,
    method,
    encrypted: flags === null ? null : (flags & 1) !== 0,
    firstEntry: nameLength === null || 30 + nameLength > data.length ? null : printable(data, 30, 30 + nameLength),
  }
  return { type: 'zip', description: `Zip archive data${details.versionNeeded === null ? '' : `, at least v${details.versionNeeded} to extract`}`, details }
}

function detectGzip(data: Buffer): FileType {
  const flags = data[3] ?? 0
  let at = 10
  if ((flags & 0x04) !== 0) at = 12 + (u16(data, 10, true) ?? data.length) // FEXTRA: skip it
  const name = (flags & 0x08) !== 0 ? cString(data, at, MAX_NAME_BYTES) : null // FNAME
  return { type: 'gzip', description: `gzip compressed data${name === null ? '' : `, was "${name}"`}`, details: { name } }
}

/** Formats whose magic alone is enough: [type, magic, offset, description]. */
const SIMPLE_MAGICS: readonly (readonly [FileTypeName, string, number, string])[] = [
  ['xz', '\xfd7zXZ\0', 0, 'XZ compressed data'],
  ['zstd', '\x28\xb5\x2f\xfd', 0, 'Zstandard compressed data'],
  ['7z', '7z\xbc\xaf\x27\x1c', 0, '7-zip archive data'],
  ['rar', 'Rar!\x1a\x07\x01\0', 0, 'RAR archive data, v5'],
  ['rar', 'Rar!\x1a\x07\0', 0, 'RAR archive data, v4'],
  ['cab', 'MSCF\0\0\0\0', 0, 'Microsoft Cabinet archive data'],
  ['deb', '!<arch>\ndebian-binary', 0, 'Debian binary package'],
  ['ar', '!<arch>\n', 0, 'current ar archive'],
  ['rpm', '\xed\xab\xee\xdb', 0, 'RPM package'],
  ['cfb', '\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1', 0, 'Composite Document File V2 Document'],
  ['pdf', '%PDF-', 0, 'PDF document'],
  ['png', '\x89PNG\r\n\x1a\n', 0, 'PNG image data'],
  ['jpeg', '\xff\xd8\xff', 0, 'JPEG image data'],
  ['gif', 'GIF87a', 0, 'GIF image data, version 87a'],
  ['gif', 'GIF89a', 0, 'GIF image data, version 89a'],
  ['tar', 'ustar\0', 257, 'POSIX tar archive'],
  ['tar', 'ustar  \0', 257, 'POSIX tar archive (GNU)'],
]

const INTERPRETER_NAMES: Readonly<Record<string, string>> = { sh: 'POSIX shell', bash: 'Bourne-Again shell', python: 'Python', perl: 'Perl' }
// A line starting with one of these (optionally as /bin/x or /usr/bin/x) is what droppers and typed-in sessions send.
const SHELL_LINE = /^[ \t]*(?:(?:\/usr)?\/s?bin\/)?(cd|wget|curl|chmod|tftp|ftpget|busybox|nohup|\.\/[^\s;|&]+)(?=[\s;|&]|$)/m

function detectShebang(data: Buffer): FileType {
  const lineEnd = data.indexOf(0x0a)
  const line = printable(data, 2, lineEnd === -1 ? data.length : lineEnd).trim()
  const words = line.split(/\s+/).filter((w) => w.length > 0)
  let interpreter = (words[0] ?? '').split('/').pop() ?? ''
  // "#!/usr/bin/env [-S] python3": the interpreter is env's first operand.
  if (interpreter === 'env') interpreter = words.slice(1).find((w) => !w.startsWith('-')) ?? 'env'
  const family = /^[a-z]+/.exec(interpreter)?.[0] ?? ''
  const named = INTERPRETER_NAMES[interpreter] ?? INTERPRETER_NAMES[family]
  const description = named !== undefined ? `${named} script` : interpreter !== '' ? `${interpreter} script` : 'script (empty shebang)'
  return { type: 'script', description, details: { interpreter: interpreter === '' ? null : interpreter, shebang: line, heuristic: false } }
}

/** Text whose lines run shell commands, without a shebang: `cd /tmp; wget http://...; chmod +x x; ./x`. */
function detectShellText(data: Buffer, scanBytes: number): FileType | null {
  const head = data.subarray(0, scanBytes)
  if (head.length === 0 || head.includes(0)) return null
  let control = 0
  for (const byte of head) if ((byte < 0x20 && byte !== 0x09 && byte !== 0x0a && byte !== 0x0d && byte !== 0x1b) || byte === 0x7f) control++
  if (control * 20 > head.length) return null // more than 5% control bytes: binary, not typed text
  const match = SHELL_LINE.exec(head.toString('latin1'))
  if (match === null) return null
  const command = (match[1] as string).startsWith('./') ? './' : (match[1] as string)
  return { type: 'script', description: 'shell commands (no shebang)', details: { interpreter: 'sh', shebang: null, heuristic: true, command } }
}

/** The type of `data` from its magic bytes and headers, or null when nothing known matches. Never throws. */
export function detectFileType(data: Buffer, options: DetectOptions = {}): FileType | null {
  const magic = u32(data, 0, false)
  if (magic === 0x7f454c46) return detectElf(data)
  if (magic === 0xfeedface || magic === 0xcefaedfe || magic === 0xfeedfacf || magic === 0xcffaedfe) return detectMacho(data, magic)
  if (magic === 0xcafebabe || magic === 0xcafebabf) return detectCafebabe(data, magic)
  if (startsWith(data, 'MZ')) return detectMz(data)
  if (startsWith(data, 'PK\x03\x04')) return detectZip(data)
  if (startsWith(data, 'PK\x05\x06')) return { type: 'zip', description: 'Zip archive data (empty)', details: {} }
  if (startsWith(data, '\x1f\x8b\x08')) return detectGzip(data)
  if (startsWith(data, 'BZh') && (data[3] ?? 0) >= 0x31 && (data[3] ?? 0) <= 0x39) {
    const blockSizeK = ((data[3] as number) - 0x30) * 100
    return { type: 'bzip2', description: `bzip2 compressed data, block size = ${blockSizeK}k`, details: { blockSizeK } }
  }
  for (const [type, bytes, at, description] of SIMPLE_MAGICS) if (startsWith(data, bytes, at)) return { type, description, details: {} }
  if (startsWith(data, '#!')) return detectShebang(data)
  return detectShellText(data, options.scriptScanBytes ?? 4096)
}
