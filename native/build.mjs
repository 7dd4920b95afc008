// Builds the eBPF side of `monitor: ebpf` (the BPF programs with clang -target bpf, its N-API addon with node-gyp)
// and the small socket addon of the NFQUEUE monitor's queue skip, all into native/build/. Run as
// `npm run build:native`. Needs Debian's clang and libbpf-dev (which pulls in libelf-dev and zlib1g-dev), plus the
// C++ toolchain node-gyp always needs (g++, make, python3).
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const outDir = join(here, 'build', 'bpf')
const programs = ['steer', 'synfacts']

function fail(message) {
  console.error(`build:native: ${message}`)
  process.exit(1)
}

function hasCommand(file, args) {
  return spawnSync(file, args, { stdio: 'ignore' }).status === 0
}

/** Each check names the Debian package that provides what is missing. */
function checkPrerequisites() {
  if (process.platform !== 'linux') fail('the eBPF monitor is Linux only')
  const missing = []
  if (!hasCommand('clang', ['--version'])) missing.push('clang (no clang on PATH)')
  if (!existsSync('/usr/include/bpf/bpf_helpers.h') || !existsSync('/usr/include/bpf/libbpf.h')) missing.push('libbpf-dev (no /usr/include/bpf/libbpf.h)')
  if (!existsSync('/usr/include/libelf.h')) missing.push('libelf-dev (no /usr/include/libelf.h)')
  if (!existsSync('/usr/include/zlib.h')) missing.push('zlib1g-dev (no /usr/include/zlib.h)')
  if (!existsSync('/usr/include/linux/bpf.h')) missing.push('linux-libc-dev (no /usr/include/linux/bpf.h)')
  if (!hasCommand('c++', ['--version']) || !hasCommand('make', ['--version'])) missing.push('build-essential (no c++ or make)')
  if (missing.length > 0) {
    const names = missing.map((m) => m.split(' ')[0]).join(' ')
    fail(`missing Debian packages:\n  ${missing.join('\n  ')}\ninstall them with: apt-get install -y ${names}`)
  }
}

/** The multiarch include dir holds asm/types.h, which the UAPI headers need and -target bpf does not search. */
function multiarchInclude() {
  const result = spawnSync('clang', ['-print-multiarch'], { encoding: 'utf8' })
  const triple = result.status === 0 ? result.stdout.trim() : ''
  const guess = triple !== '' ? triple : process.arch === 'arm64' ? 'aarch64-linux-gnu' : 'x86_64-linux-gnu'
  return `/usr/include/${guess}`
}

/** node-gyp ships inside npm; `npm run` says where, otherwise it sits next to this node's npm. */
function nodeGypPath() {
  const fromNpm = process.env['npm_config_node_gyp']
  if (fromNpm !== undefined && existsSync(fromNpm)) return fromNpm
  const candidates = [join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js')]
  try {
    candidates.unshift(createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js'))
  } catch {
    // not installed locally: the copy bundled with npm will do
  }
  const found = candidates.find((c) => existsSync(c))
  if (found === undefined) fail('node-gyp not found (it comes with npm; run this through `npm run build:native`)')
  return found
}

/** Local headers, never a download: npm's nodedir, else the headers installed next to this node. */
function nodedirArgs() {
  const configured = process.env['npm_config_nodedir']
  if (configured !== undefined && configured !== '') return [`--nodedir=${configured}`]
  const prefix = join(dirname(process.execPath), '..')
  return existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : []
}

function run(file, args, options = {}) {
  const result = spawnSync(file, args, { stdio: 'inherit', ...options })
  if (result.status !== 0) fail(`${file} ${args.join(' ')} failed (exit ${result.status ?? result.signal})`)
}

checkPrerequisites()
// node-gyp rebuild empties build/ first, so the addon is built before the BPF objects are written next to it.
run(process.execPath, [nodeGypPath(), 'rebuild', ...nodedirArgs()], { cwd: here })
mkdirSync(outDir, { recursive: true })
for (const name of programs) {
  const source = join(here, 'bpf', `${name}.bpf.c`)
  const object = join(outDir, `${name}.bpf.o`)
  run('clang', ['-O2', '-g', '-target', 'bpf', '-Wall', '-Werror', `-I${multiarchInclude()}`, '-c', source, '-o', object])
}
console.log(`build:native: ${programs.map((p) => `build/bpf/${p}.bpf.o`).join(', ')} and build/Release/honeytrap_bpf.node, honeytrap_socket.node`)
